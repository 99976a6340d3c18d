package train_test

import (
	"testing"

	"github.com/mdm-gpu/mdm-gpu/engine/data"
	"github.com/mdm-gpu/mdm-gpu/internal/testutil"
)

// tinyShakespeare loads ../shared/data/char/tinyshakespeare.txt (the test skips when it is
// absent) with the vocabulary of its characters, and returns the vocabulary with the token
// ids of the first 90% (training) and the last 10% (validation).
func tinyShakespeare(t *testing.T) (tok *data.Char, trainIDs, valIDs []int32) {
	t.Helper()
	text, err := data.ReadText(testutil.SharedData(t, "char/tinyshakespeare.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if tok, err = data.NewCharVocab(text); err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	if trainIDs, valIDs, err = data.Split(ids, 0.1); err != nil {
		t.Fatal(err)
	}
	return tok, trainIDs, valIDs
}

// evalStream returns the non-overlapping windows of L tokens of ids (the tail that does not
// fill a window dropped), concatenated: the evaluation set of the long tests.
func evalStream(t *testing.T, ids []int32, L int) []int32 {
	t.Helper()
	w, err := data.NewWindows(ids, L)
	if err != nil {
		t.Fatal(err)
	}
	var out []int32
	for _, x := range w.EvalWindows().Windows {
		out = append(out, x...)
	}
	return out
}
