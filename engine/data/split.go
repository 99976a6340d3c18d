package data

import (
	"fmt"
	"math"
)

// Split divides a token stream into a training part and a held-out part: the held-out
// part is the last fraction heldOutFrac of the stream, the training part everything
// before it. The training part has floor(N·(1−heldOutFrac)) tokens, as nanoGPT's
// data[:int(n*0.9)] does for tinyshakespeare (heldOutFrac = 0.1: first 90% / last 10%).
//
// Both results are sub-slices of ids (no copy) with their capacity clipped, so appending
// to train never overwrites heldOut. Split fails if heldOutFrac is not in (0, 1) (NaN
// included) or if either part would be empty.
func Split(ids []int32, heldOutFrac float64) (train, heldOut []int32, err error) {
	if !(heldOutFrac > 0 && heldOutFrac < 1) {
		return nil, nil, fmt.Errorf("split: held-out fraction %v is not in (0, 1); use e.g. 0.1 for the last 10%%", heldOutFrac)
	}
	n := len(ids)
	nTrain := int(math.Floor(float64(n) * (1 - heldOutFrac)))
	if nTrain <= 0 || nTrain >= n {
		return nil, nil, fmt.Errorf("split: %d tokens with held-out fraction %v leave %d training and %d held-out tokens; both must be non-empty (use more data or another fraction)",
			n, heldOutFrac, max(nTrain, 0), n-min(max(nTrain, 0), n))
	}
	return ids[:nTrain:nTrain], ids[nTrain:n:n], nil
}
