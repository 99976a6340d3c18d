package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
)

type prepareOpts struct {
	out         string
	name        string
	docFormat   string
	jsonlField  string
	tokenizer   string
	heldOut     float64
	splitSeed   uint64
	shardTokens int
	workers     int
	force       bool
}

func newPrepareCmd(a *app) *cobra.Command {
	var o prepareOpts
	cmd := &cobra.Command{
		Use:   "prepare FILE|DIR...",
		Short: "Tokenise text corpora into GPT-2 token shards for training (OpenWebText style)",
		Long: `Tokenise text corpora with GPT-2 BPE into token shards that 'mdm-gpu train --data
DIR/NAME.manifest.json' memory-maps (the whole corpus is never loaded into memory).

Every input is divided into documents (--doc-format): file (the whole file is one document,
OpenWebText's layout of one .txt per web page), paragraphs (separated by blank lines), lines
(one document per non-blank line) or jsonl (one JSON object per line, the string field
--jsonl-field); auto = jsonl for .jsonl/.ndjson files, file otherwise. A directory is
replaced by the files under it, in sorted order. Each document is encoded and followed by
EOS (50256), and whole documents go to the train or the validation split: document d is
held out with probability --held-out (a hash of --split-seed and d, so the split does not
depend on the number of workers or shards).

Output in --out: NAME_train_000000.bin, … and NAME_val_000000.bin, … (the llm.c / nanoGPT
.bin layout: a 1024-byte header of 256 int32 — magic 20240520, version 1, token count —
then uint16 tokens; each split is one stream cut into shards of --shard-tokens tokens) and
NAME.manifest.json (tokenizer and fingerprint, EOS policy, split rule, per-shard token
counts and sha256). The summary (documents and tokens per split, shard files) is printed on
stdout.`,
		Example: `  # OpenWebText-style: one document per file, 2% of the documents held out
  mdm-gpu prepare --out data/owt --name owt openwebtext/
  mdm-gpu train --preset owt-small --data data/owt/owt.manifest.json

  # novels split into paragraphs, JSON Lines with a "text" field
  mdm-gpu prepare --out data/prose --name prose --doc-format paragraphs austen/*.txt
  mdm-gpu prepare --out data/sotu --name sotu --jsonl-field text sotu.jsonl`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("prepare needs at least one input file or directory (see 'mdm-gpu prepare --help')")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.prepare(o, args) },
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.out, "out", "", "output directory for the shards and the manifest (required)")
	fs.StringVar(&o.name, "name", "corpus", "name prefix of the files: NAME_train_*.bin, NAME_val_*.bin, NAME.manifest.json")
	fs.StringVar(&o.docFormat, "doc-format", "auto", "how inputs divide into documents: auto, file, paragraphs, lines, jsonl")
	fs.StringVar(&o.jsonlField, "jsonl-field", "text", "string field of JSON Lines objects")
	fs.StringVar(&o.tokenizer, "tokenizer", "gpt2", "tokenizer: gpt2 (GPT-2 BPE, V=50257, EOS 50256 after every document)")
	fs.Float64Var(&o.heldOut, "held-out", 0.02, "fraction of the documents held out as the validation split, in [0, 1) (MD4's OWT: 0.02)")
	fs.Uint64Var(&o.splitSeed, "split-seed", 0, "seed of the document split")
	fs.IntVar(&o.shardTokens, "shard-tokens", 100_000_000, "tokens per shard file (100M = 200 MB, as llm.c)")
	fs.IntVar(&o.workers, "workers", 0, "tokenising goroutines; 0 = all cores (the output does not depend on it)")
	fs.BoolVar(&o.force, "force", false, "replace an existing NAME.manifest.json (and its shards) in --out")
	return cmd
}

// expandInputs replaces directories by their regular files (recursively, sorted).
func expandInputs(args []string) ([]string, error) {
	var out []string
	for _, p := range args {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", p, unwrapPathErr(err))
		}
		if !fi.IsDir() {
			out = append(out, p)
			continue
		}
		var files []string
		err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
				files = append(files, q)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", p, err)
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("input directory %s holds no files", p)
		}
		sort.Strings(files)
		out = append(out, files...)
	}
	return out, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

func (a *app) prepare(o prepareOpts, args []string) error {
	switch {
	case o.out == "":
		return usagef("--out is required: the directory that receives the shards and NAME.manifest.json")
	case o.name == "" || filepath.Base(o.name) != o.name || strings.ContainsAny(o.name, " \t"):
		return usagef("--name %q: must be a plain file-name prefix (no directory, no spaces)", o.name)
	case !(o.heldOut >= 0 && o.heldOut < 1):
		return usagef("--held-out %v: must be a fraction in [0, 1) (0.02 = 2%% of the documents)", o.heldOut)
	case o.shardTokens < 1 || o.shardTokens > data.MaxShardTokens:
		return usagef("--shard-tokens %d: must be in [1, %d]", o.shardTokens, data.MaxShardTokens)
	case o.workers < 0:
		return usagef("--workers %d: must be ≥ 0 (0 = all cores)", o.workers)
	}
	var format data.DocFormat
	switch o.docFormat {
	case "auto":
	case "file", "paragraphs", "lines", "jsonl":
		format = data.DocFormat(o.docFormat)
	default:
		return usagef("--doc-format %q: valid: auto, file, paragraphs, lines, jsonl", o.docFormat)
	}
	if o.tokenizer != "gpt2" {
		return usagef("--tokenizer %q: prepare writes GPT-2 BPE shards (--tokenizer gpt2); the char-level tokenizers train directly from a text file with 'mdm-gpu train --data FILE'", o.tokenizer)
	}
	files, err := expandInputs(args)
	if err != nil {
		return err
	}
	tok, err := data.NewGPT2()
	if err != nil {
		return err
	}
	manifest := filepath.Join(o.out, o.name+".manifest.json")
	if _, err := os.Stat(manifest); err == nil && !o.force {
		return fmt.Errorf("%s already exists; pass --force to replace it, or choose another --name or --out", manifest)
	}
	var inputs []data.DocSource
	for _, f := range files {
		in := data.DocSource{Path: f, Format: format, Field: o.jsonlField}
		if in.Format == "" {
			in.Format = data.DetectDocFormat(f)
		}
		inputs = append(inputs, in)
	}
	var total int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	a.log.Info().Int("inputs", len(files)).Int64("bytes", total).Str("out", o.out).Str("name", o.name).Str("doc_format", o.docFormat).
		Float64("held_out", o.heldOut).Int("shard_tokens", o.shardTokens).Msg("preparing GPT-2 token shards")
	_, statErr := os.Stat(o.out)
	created := os.IsNotExist(statErr)
	bar := a.newBar(int(max(total, 1)), "prepare", "bytes")
	m, err := data.Prepare(data.PrepareOptions{Inputs: inputs, OutDir: o.out, Name: o.name, Tokenizer: tok, EOS: data.GPT2EOS,
		HeldOut: o.heldOut, SplitSeed: o.splitSeed, ShardTokens: o.shardTokens, Workers: o.workers, Overwrite: o.force,
		Progress: func(p data.PrepareProgress) {
			bar.Describe(fmt.Sprintf("file %d/%d | %d docs | %s train + %s val tokens", p.Input+1, p.Inputs, p.Documents,
				siCount(float64(p.TrainTokens)), siCount(float64(p.ValTokens))))
			bar.Set(int(p.BytesDone))
		}})
	a.endBar()
	if err != nil {
		if created {
			os.Remove(o.out) // the directory this run created, if nothing else is in it
		}
		return err
	}
	a.log.Info().Str("manifest", m.Path()).Int64("documents", m.Documents).Int64("train_tokens", m.Train.Tokens).Int64("val_tokens", m.Val.Tokens).Msg("prepared")
	w := a.stdout
	fmt.Fprintf(w, "Prepared %s: %d input file(s), %d documents (%d empty, skipped), tokenizer %s (V=%d), EOS %d after every document\n",
		m.Name, len(m.Inputs), m.Documents, m.EmptyDocuments, m.Tokenizer, m.VocabSize, m.EOS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SPLIT\tDOCUMENTS\tTOKENS\tSHARDS")
	for _, s := range []struct {
		name string
		info data.SplitInfo
	}{{"train", m.Train}, {"val", m.Val}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", s.name, s.info.Documents, s.info.Tokens, len(s.info.Shards))
	}
	tw.Flush()
	dir := filepath.Dir(m.Path())
	for _, s := range append(append([]data.ShardInfo{}, m.Train.Shards...), m.Val.Shards...) {
		fmt.Fprintf(w, "  %s  %d tokens\n", filepath.Join(dir, s.File), s.Tokens)
	}
	fmt.Fprintf(w, "Manifest: %s\nTrain with: mdm-gpu train --preset owt-small --data %s\n", m.Path(), shellQuote(m.Path()))
	return nil
}
