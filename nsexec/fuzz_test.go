package nsexec

import (
	"bytes"
	"io"
	"testing"
)

// packets reads one Write's worth per Read, as a SOCK_SEQPACKET socket
// gives one packet per read.
type packets struct{ p [][]byte }

func (r *packets) Read(b []byte) (int, error) {
	if len(r.p) == 0 {
		return 0, io.EOF
	}
	n := copy(b, r.p[0])
	r.p = r.p[1:]
	return n, nil
}

// The init stage's config, as it arrives from the launcher.
func FuzzReadConfig(f *testing.F) {
	f.Add([]byte("30"), []byte(`{"argv":["x"],"mode":"join"}  `))
	f.Add([]byte("-1"), []byte(`{}`))
	f.Add([]byte("99999999999"), []byte(``))
	f.Add([]byte(`"x"`), []byte(`{"argv":[]}`))
	f.Fuzz(func(t *testing.T, size, body []byte) {
		var chunks [][]byte
		for b := body; len(b) > 0; b = b[min(len(b), 7):] {
			chunks = append(chunks, b[:min(len(b), 7)])
		}
		c, err := readConfig(&packets{p: append([][]byte{size}, chunks...)})
		if err != nil {
			return
		}
		if len(c.Argv) == 0 || (c.Mode != ModeJoin && (c.LevelDir == "" || c.RunDir == "")) {
			t.Errorf("readConfig accepted an incomplete config: %+v", c)
		}
		_ = bytes.Clone(body)
	})
}
