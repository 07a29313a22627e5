package transport

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordingConn is the connection side, for the transport alone.
type recordingConn struct {
	mu     sync.Mutex
	wrote  int
	data   []byte
	lost   chan error
	gotAll chan struct{}
	want   int
}

func (c *recordingConn) Flush()         {}
func (c *recordingConn) Pending() int64 { return 0 }
func (c *recordingConn) Wrote(n int)    { c.mu.Lock(); c.wrote += n; c.mu.Unlock() }
func (c *recordingConn) Lost(err error) { c.lost <- err }
func (c *recordingConn) Data(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data = append(c.data, b...)
	if len(c.data) == c.want {
		close(c.gotAll)
	}
	return nil
}

// A socket hijacked from net/http: frames are written in order and
// counted, bytes the peer sent after the request (buffered by the HTTP
// server) and later reach Data, and the peer's close ends serve with Lost.
func TestStdHijackWriteRead(t *testing.T) {
	c := &recordingConn{lost: make(chan error, 1), gotAll: make(chan struct{}), want: len("early") + len("late")}
	served := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr, attach, serve, err := Hijack(w, c, nil, time.Second)
		if err != nil {
			served <- err
			return
		}
		if _, ok := tr.(*Std); !ok {
			t.Errorf("transport %T, want *Std under net/http", tr)
		}
		attach()
		served <- tr.Write(c, [][]byte{[]byte("one,"), []byte("two,"), []byte("three")})
		serve()
	}))
	defer srv.Close()
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\nearly"); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("hijack or write: %v", err)
	}
	got := make([]byte, len("one,two,three"))
	if _, err := io.ReadFull(bufio.NewReader(nc), got); err != nil || string(got) != "one,two,three" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if _, err := io.WriteString(nc, "late"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.gotAll:
	case <-time.After(10 * time.Second):
		t.Fatal("the bytes the peer sent did not all reach Data")
	}
	c.mu.Lock()
	data, wrote := string(c.data), c.wrote
	c.mu.Unlock()
	if data != "earlylate" || wrote != len(got) {
		t.Fatalf("data %q, wrote %d", data, wrote)
	}
	nc.Close()
	select {
	case <-c.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer's close was not reported")
	}
}
