package sched

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// TCPConfig configures a TCP communicator: one process per device, rank 0 runs the
// rendezvous and the host-staged reductions (a star: every rank talks to rank 0 only). It
// carries the small control traffic of every job (the NCCL unique id, agreement on skipped
// steps) and, where NCCL is absent (simulated devices, CPU processes), the gradients.
type TCPConfig struct {
	Rank, Size int
	// Addr is rank 0's host:port (MASTER_ADDR:MASTER_PORT). Rank 0 listens on its port on
	// every interface.
	Addr string
	// LocalRank and Host are reported in errors (which process, on which machine).
	LocalRank int
	Host      string
	// Fingerprint describes the job's configuration (see Fingerprint); rank 0 refuses a
	// peer whose fingerprint differs from its own, naming the first differing key.
	Fingerprint string
	// JoinTimeout bounds the rendezvous (default 5 minutes): rank 0 reports the ranks that
	// did not join, the others report that rank 0 could not be reached or did not answer.
	JoinTimeout time.Duration
	// OpTimeout bounds every wait inside a collective (default DefaultTimeout).
	OpTimeout time.Duration
	// Listener, if set, is used by rank 0 instead of listening on Addr's port.
	Listener net.Listener
}

// TCPFromEnv builds the TCPConfig of a LaunchEnv.
func TCPFromEnv(e LaunchEnv, fingerprint string) TCPConfig {
	host, _ := os.Hostname()
	return TCPConfig{Rank: e.Rank, Size: e.WorldSize, Addr: e.Addr(), LocalRank: e.LocalRank, Host: host, Fingerprint: fingerprint}
}

const (
	tcpProto = 1
	// frame types
	fHello   = 1
	fWelcome = 2
	fCall    = 3
	fData    = 4
	fGo      = 5
	fAbort   = 6

	// call kinds
	kReduce    = 1
	kBroadcast = 2
	kBarrier   = 3

	tcpChunk    = 1 << 20 // bytes per data frame
	maxCtlFrame = 1 << 20 // largest hello/welcome/abort frame accepted
)

type hello struct {
	Proto       int    `json:"proto"`
	Rank        int    `json:"rank"`
	Size        int    `json:"size"`
	LocalRank   int    `json:"local_rank"`
	Host        string `json:"host"`
	PID         int    `json:"pid"`
	Fingerprint string `json:"fingerprint"`
	LittleEnd   bool   `json:"little_endian"`
}

type welcome struct {
	Error string `json:"error,omitempty"`
}

// call is the 24-byte header of a collective: kind, element type, reduction, root, count, seq.
type call struct {
	kind, code, op byte
	root           int32
	n              uint64
	seq            uint64
}

func (c call) encode() []byte {
	b := make([]byte, 24)
	b[0], b[1], b[2] = c.kind, c.code, c.op
	binary.LittleEndian.PutUint32(b[4:], uint32(c.root))
	binary.LittleEndian.PutUint64(b[8:], c.n)
	binary.LittleEndian.PutUint64(b[16:], c.seq)
	return b
}

func decodeCall(b []byte) (call, error) {
	if len(b) != 24 {
		return call{}, fmt.Errorf("malformed collective header of %d bytes", len(b))
	}
	return call{kind: b[0], code: b[1], op: b[2], root: int32(binary.LittleEndian.Uint32(b[4:])),
		n: binary.LittleEndian.Uint64(b[8:]), seq: binary.LittleEndian.Uint64(b[16:])}, nil
}

func (c call) String() string {
	k := bufKind{code: c.code}
	switch c.kind {
	case kReduce:
		return fmt.Sprintf("AllReduce(%d × %s, %v) #%d", c.n, k.typeName(), ReduceOp(c.op), c.seq)
	case kBroadcast:
		return fmt.Sprintf("Broadcast(%d × %s, root %d) #%d", c.n, k.typeName(), c.root, c.seq)
	case kBarrier:
		return fmt.Sprintf("Barrier #%d", c.seq)
	}
	return fmt.Sprintf("collective kind %d #%d", c.kind, c.seq)
}

// peer is one TCP connection with framed, deadline-bounded I/O.
type peer struct {
	rank    int
	desc    string // "rank 2 (host, pid)"
	conn    net.Conn
	timeout time.Duration
	wmu     sync.Mutex
	hdr     [8]byte
}

func (p *peer) write(typ byte, payload ...[]byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	n := 0
	for _, b := range payload {
		n += len(b)
	}
	var h [8]byte
	h[0] = typ
	binary.LittleEndian.PutUint32(h[4:], uint32(n))
	p.conn.SetWriteDeadline(time.Now().Add(p.timeout))
	if _, err := p.conn.Write(h[:]); err != nil {
		return p.ioErr("sending to", err)
	}
	for _, b := range payload {
		if _, err := p.conn.Write(b); err != nil {
			return p.ioErr("sending to", err)
		}
	}
	return nil
}

// readHeader reads a frame header; an abort frame becomes an error carrying its message.
func (p *peer) readHeader(want byte) (int, error) {
	p.conn.SetReadDeadline(time.Now().Add(p.timeout))
	if _, err := io.ReadFull(p.conn, p.hdr[:]); err != nil {
		return 0, p.ioErr("waiting for", err)
	}
	n := int(binary.LittleEndian.Uint32(p.hdr[4:]))
	typ := p.hdr[0]
	if typ == fAbort {
		msg := make([]byte, min(n, maxCtlFrame))
		io.ReadFull(p.conn, msg)
		return 0, fmt.Errorf("%w: %s", ErrAborted, msg)
	}
	if typ != want {
		return 0, fmt.Errorf("%w: protocol error: %s sent frame type %d, expected %d", ErrAborted, p.desc, typ, want)
	}
	return n, nil
}

// read reads a whole frame of type want into a new buffer (control frames).
func (p *peer) read(want byte) ([]byte, error) {
	n, err := p.readHeader(want)
	if err != nil {
		return nil, err
	}
	if n > maxCtlFrame {
		return nil, fmt.Errorf("%w: %s sent a control frame of %d bytes", ErrAborted, p.desc, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(p.conn, b); err != nil {
		return nil, p.ioErr("reading from", err)
	}
	return b, nil
}

// readInto reads a data frame of exactly len(dst) bytes.
func (p *peer) readInto(dst []byte) error {
	n, err := p.readHeader(fData)
	if err != nil {
		return err
	}
	if n != len(dst) {
		return fmt.Errorf("%w: %s sent %d bytes of data, expected %d", ErrAborted, p.desc, n, len(dst))
	}
	if _, err := io.ReadFull(p.conn, dst); err != nil {
		return p.ioErr("reading from", err)
	}
	return nil
}

func (p *peer) ioErr(what string, err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: timed out after %v %s %s (is it still running? raise the timeout if its steps are slower)", ErrAborted, p.timeout, what, p.desc)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed):
		return fmt.Errorf("%w: %s closed the connection (did it exit or crash?)", ErrAborted, p.desc)
	}
	return fmt.Errorf("%w: %s %s: %v", ErrAborted, what, p.desc, err)
}

// tcpComm is a member of a TCP communicator. Rank 0 holds a connection to every other
// rank; the others hold one connection, to rank 0.
type tcpComm struct {
	rank, size int
	peers      []*peer // rank 0: indexed by rank (peers[0] nil); others: peers[0] is rank 0
	ln         net.Listener
	seq        uint64
	scratch    []float64 // rank 0: per-peer chunk buffers (8-byte aligned)
	mu         sync.Mutex
	err        error // sticky: once a collective failed, the communicator is dead
}

// DialTCP joins the TCP communicator described by cfg: rank 0 listens and waits for the
// other Size−1 ranks, checks that they agree (world size, protocol, byte order,
// configuration fingerprint) and welcomes them; the others dial rank 0, retrying until it
// listens. Every wait is bounded by JoinTimeout, and the error names the missing ranks or
// the unreachable address. A world of one needs no network.
func DialTCP(cfg TCPConfig) (Comm, error) {
	if cfg.Size < 1 || cfg.Rank < 0 || cfg.Rank >= cfg.Size {
		return nil, fmt.Errorf("sched: rank %d of world size %d is invalid", cfg.Rank, cfg.Size)
	}
	if cfg.JoinTimeout <= 0 {
		cfg.JoinTimeout = 5 * time.Minute
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultTimeout
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname()
	}
	c := &tcpComm{rank: cfg.Rank, size: cfg.Size}
	if cfg.Size == 1 {
		return c, nil
	}
	if cfg.Rank == 0 {
		return c, c.serve(cfg)
	}
	return c, c.join(cfg)
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

func (c *tcpComm) serve(cfg TCPConfig) error {
	ln := cfg.Listener
	if ln == nil {
		_, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return fmt.Errorf("sched: rendezvous address %q: %v", cfg.Addr, err)
		}
		ln, err = net.Listen("tcp", net.JoinHostPort("", port))
		if err != nil {
			return fmt.Errorf("sched: rank 0 cannot listen on port %s for the rendezvous: %v (is another job using MASTER_PORT=%s?)", port, err, port)
		}
	}
	c.ln = ln
	deadline := time.Now().Add(cfg.JoinTimeout)
	c.peers = make([]*peer, cfg.Size)
	type arrival struct {
		p   *peer
		h   hello
		err error
	}
	arrivals := make(chan arrival)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			go func() {
				p := &peer{conn: conn, timeout: time.Until(deadline), desc: "a connecting process (" + conn.RemoteAddr().String() + ")"}
				if p.timeout <= 0 {
					p.timeout = time.Second
				}
				var h hello
				b, err := p.read(fHello)
				if err == nil {
					err = json.Unmarshal(b, &h)
				}
				select {
				case arrivals <- arrival{p: p, h: h, err: err}:
				case <-stop:
					conn.Close()
				}
			}()
		}
	}()
	fail := func(err error) error {
		for _, p := range c.peers {
			if p != nil {
				b, _ := json.Marshal(welcome{Error: err.Error()})
				p.timeout = time.Second
				p.write(fWelcome, b)
				p.conn.Close()
			}
		}
		c.peers = nil
		ln.Close()
		c.err = err
		return err
	}
	joined := 1
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for joined < cfg.Size {
		select {
		case a := <-arrivals:
			if a.err != nil {
				a.p.conn.Close()
				continue // not one of ours (a port scanner, a stale process); keep waiting
			}
			h := a.h
			a.p.rank = h.Rank
			a.p.desc = fmt.Sprintf("rank %d (host %s, local rank %d, pid %d)", h.Rank, h.Host, h.LocalRank, h.PID)
			reject := func(err error) error {
				b, _ := json.Marshal(welcome{Error: err.Error()})
				a.p.write(fWelcome, b)
				a.p.conn.Close()
				return fail(err)
			}
			switch {
			case h.Proto != tcpProto:
				return reject(fmt.Errorf("sched: %s speaks rendezvous protocol %d, rank 0 speaks %d: run the same mdm-gpu binary everywhere", a.p.desc, h.Proto, tcpProto))
			case h.Size != cfg.Size:
				return reject(fmt.Errorf("sched: %s was started with WORLD_SIZE=%d, rank 0 with %d", a.p.desc, h.Size, cfg.Size))
			case h.Rank <= 0 || h.Rank >= cfg.Size:
				return reject(fmt.Errorf("sched: %s claims rank %d, outside [1, %d)", a.p.desc, h.Rank, cfg.Size))
			case c.peers[h.Rank] != nil:
				return reject(fmt.Errorf("sched: two processes claim rank %d: %s and %s; check RANK/SLURM_PROCID", h.Rank, c.peers[h.Rank].desc, a.p.desc))
			case h.LittleEnd != littleEndian():
				return reject(fmt.Errorf("sched: %s has a different byte order than rank 0", a.p.desc))
			case h.Fingerprint != cfg.Fingerprint:
				return reject(fmt.Errorf("sched: %s runs a different configuration than rank 0 (refused at start): %s",
					a.p.desc, DiffFingerprints(cfg.Fingerprint, h.Fingerprint)))
			}
			c.peers[h.Rank] = a.p
			joined++
		case <-timer.C:
			var missing []string
			for r := 1; r < cfg.Size; r++ {
				if c.peers[r] == nil {
					missing = append(missing, strconv.Itoa(r))
				}
			}
			return fail(fmt.Errorf("sched: rendezvous at %s: rank(s) %s of %d did not join within %v (were they started with MASTER_ADDR/MASTER_PORT pointing here and WORLD_SIZE=%d?)",
				cfg.Addr, strings.Join(missing, ", "), cfg.Size, cfg.JoinTimeout, cfg.Size))
		}
	}
	ln.Close() // every rank has joined
	c.ln = nil
	for _, p := range c.peers[1:] {
		p.timeout = cfg.OpTimeout
		b, _ := json.Marshal(welcome{})
		if err := p.write(fWelcome, b); err != nil {
			return fail(err)
		}
	}
	c.scratch = make([]float64, (tcpChunk/8)*(cfg.Size-1))
	return nil
}

func (c *tcpComm) join(cfg TCPConfig) error {
	deadline := time.Now().Add(cfg.JoinTimeout)
	var conn net.Conn
	var lastErr error
	for {
		left := time.Until(deadline)
		if left <= 0 {
			err := fmt.Errorf("sched: rank %d could not reach rank 0 at %s within %v: %v (is rank 0 running, and MASTER_ADDR/MASTER_PORT the same for every process?)",
				cfg.Rank, cfg.Addr, cfg.JoinTimeout, lastErr)
			c.err = err
			return err
		}
		var err error
		conn, err = net.DialTimeout("tcp", cfg.Addr, min(left, 2*time.Second))
		if err == nil {
			break
		}
		lastErr = err
		time.Sleep(min(100*time.Millisecond, max(time.Until(deadline), 0)))
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	// Rank 0 decides when the rendezvous fails and tells every joined rank why; waiting a
	// little longer than it lets that message arrive instead of a bare timeout.
	p := &peer{rank: 0, conn: conn, timeout: time.Until(deadline) + 5*time.Second, desc: "rank 0 (" + cfg.Addr + ")"}
	b, _ := json.Marshal(hello{Proto: tcpProto, Rank: cfg.Rank, Size: cfg.Size, LocalRank: cfg.LocalRank, Host: cfg.Host,
		PID: os.Getpid(), Fingerprint: cfg.Fingerprint, LittleEnd: littleEndian()})
	if err := p.write(fHello, b); err != nil {
		conn.Close()
		c.err = err
		return err
	}
	wb, err := p.read(fWelcome)
	if err != nil {
		conn.Close()
		if strings.Contains(err.Error(), "timed out") {
			err = fmt.Errorf("sched: rank %d reached rank 0 at %s but the rendezvous did not complete within %v (other ranks missing, or rank 0 stuck?): %w",
				cfg.Rank, cfg.Addr, cfg.JoinTimeout+5*time.Second, err)
		}
		c.err = err
		return err
	}
	var w welcome
	if err := json.Unmarshal(wb, &w); err != nil || w.Error != "" {
		conn.Close()
		if err == nil {
			c.err = fmt.Errorf("sched: rank 0 ended the rendezvous (rank %d): %s", cfg.Rank, strings.TrimPrefix(w.Error, "sched: "))
		} else {
			c.err = fmt.Errorf("sched: rendezvous: malformed answer from rank 0: %v", err)
		}
		return c.err
	}
	p.timeout = cfg.OpTimeout
	c.peers = []*peer{p}
	return nil
}

func (c *tcpComm) Rank() int { return c.rank }
func (c *tcpComm) Size() int { return c.size }

// fail makes err sticky, tells the other side(s) why and closes the connections, so that
// every other rank's pending collective fails promptly instead of waiting for its timeout.
func (c *tcpComm) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if !errors.Is(err, ErrAborted) {
		err = fmt.Errorf("%w: %w", ErrAborted, err)
	}
	c.err = err
	msg := []byte(fmt.Sprintf("rank %d: %v", c.rank, err))
	for _, p := range c.peers {
		if p != nil {
			p.timeout = time.Second
			p.write(fAbort, msg)
			p.conn.Close()
		}
	}
	return err
}

func (c *tcpComm) sticky() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *tcpComm) Abort(err error) {
	if err == nil {
		err = ErrAborted
	}
	c.fail(err)
}

func (c *tcpComm) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = fmt.Errorf("sched: communicator closed")
	}
	for _, p := range c.peers {
		if p != nil {
			p.conn.Close()
		}
	}
	if c.ln != nil {
		c.ln.Close()
	}
	return nil
}

// start sends (or, on rank 0, collects and checks) the header of the next collective.
func (c *tcpComm) start(me call) error {
	if err := c.sticky(); err != nil {
		return err
	}
	c.seq++
	me.seq = c.seq
	if c.size == 1 {
		return nil
	}
	if c.rank != 0 {
		if err := c.peers[0].write(fCall, me.encode()); err != nil {
			return c.fail(err)
		}
		return nil
	}
	for r := 1; r < c.size; r++ {
		b, err := c.peers[r].read(fCall)
		if err != nil {
			return c.fail(err)
		}
		got, err := decodeCall(b)
		if err != nil {
			return c.fail(err)
		}
		if got != me {
			return c.fail(fmt.Errorf("collective mismatch: rank %d called %v while rank 0 called %v", r, got, me))
		}
	}
	return nil
}

func (c *tcpComm) AllReduce(buf any, op ReduceOp) error {
	k, err := describe(buf, true)
	if err == nil {
		err = checkOp(op)
	}
	if err != nil {
		return c.fail(err)
	}
	if err := c.start(call{kind: kReduce, code: k.code, op: byte(op), n: uint64(k.n)}); err != nil {
		return err
	}
	if c.size > 1 {
		if c.rank == 0 {
			err = c.reduceRoot(k)
		} else {
			err = c.reducePeer(k)
		}
		if err != nil {
			return c.fail(err)
		}
	}
	if op == Mean {
		scaleMean(buf, c.size)
	}
	return nil
}

// reducePeer streams the buffer to rank 0 (in a goroutine) while reading the reduced
// chunks back into it. Rank 0 answers chunk i only after receiving chunk i from everyone,
// so chunk i of the buffer has been sent before its result overwrites it.
func (c *tcpComm) reducePeer(k bufKind) error {
	p := c.peers[0]
	nchunks := (len(k.bytes) + tcpChunk - 1) / tcpChunk
	written := make(chan struct{}, nchunks) // one token per chunk handed to the socket
	sent := make(chan error, 1)
	go func() {
		for lo := 0; lo < len(k.bytes); lo += tcpChunk {
			if err := p.write(fData, k.bytes[lo:min(lo+tcpChunk, len(k.bytes))]); err != nil {
				sent <- err
				return
			}
			written <- struct{}{}
		}
		sent <- nil
	}()
	// The result of a chunk goes to a separate buffer and is copied into place only once
	// the writer has finished with that chunk (the token orders the two in Go's memory
	// model; the network alone would not).
	res := make([]byte, min(tcpChunk, len(k.bytes)))
	var sentErr error
	finished := false
	for lo := 0; lo < len(k.bytes); lo += tcpChunk {
		hi := min(lo+tcpChunk, len(k.bytes))
		if err := p.readInto(res[:hi-lo]); err != nil {
			p.conn.Close() // unblock the writer
			if !finished {
				<-sent
			}
			return err
		}
		select {
		case <-written:
		case err := <-sent:
			if err != nil { // the writer failed before finishing this chunk
				return err
			}
			// The writer finished every chunk, so every token is buffered.
			sentErr, finished = nil, true
			<-written
		}
		copy(k.bytes[lo:hi], res[:hi-lo])
	}
	if finished {
		return sentErr
	}
	return <-sent
}

func (c *tcpComm) reduceRoot(k bufKind) error {
	esz := 4
	if k.code == 4 {
		esz = 8
	}
	per := tcpChunk / 8 // float64 words per peer chunk buffer
	for lo := 0; lo < len(k.bytes); lo += tcpChunk {
		hi := min(lo+tcpChunk, len(k.bytes))
		nb := hi - lo
		for r := 1; r < c.size; r++ {
			w := c.scratch[(r-1)*per : (r-1)*per+per]
			dst := unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), 8*per)[:nb]
			if err := c.peers[r].readInto(dst); err != nil {
				return err
			}
		}
		ne := nb / esz
		switch k.code {
		case 3:
			src := make([][]float32, c.size)
			src[0] = unsafe.Slice((*float32)(unsafe.Pointer(&k.bytes[lo])), ne)
			for r := 1; r < c.size; r++ {
				src[r] = unsafe.Slice((*float32)(unsafe.Pointer(&c.scratch[(r-1)*per])), ne)
			}
			TreeSum(src[0], src)
		case 4:
			src := make([][]float64, c.size)
			src[0] = unsafe.Slice((*float64)(unsafe.Pointer(&k.bytes[lo])), ne)
			for r := 1; r < c.size; r++ {
				src[r] = c.scratch[(r-1)*per : (r-1)*per+ne]
			}
			TreeSum(src[0], src)
		}
		for r := 1; r < c.size; r++ {
			if err := c.peers[r].write(fData, k.bytes[lo:hi]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *tcpComm) Broadcast(buf any, root int) error {
	k, err := describe(buf, false)
	if err == nil && (root < 0 || root >= c.size) {
		err = fmt.Errorf("sched: Broadcast root %d outside [0, %d)", root, c.size)
	}
	if err != nil {
		return c.fail(err)
	}
	if err := c.start(call{kind: kBroadcast, code: k.code, root: int32(root), n: uint64(k.n)}); err != nil {
		return err
	}
	if c.size == 1 {
		return nil
	}
	err = func() error {
		if c.rank != 0 {
			if c.rank == root {
				for lo := 0; lo < len(k.bytes); lo += tcpChunk {
					if err := c.peers[0].write(fData, k.bytes[lo:min(lo+tcpChunk, len(k.bytes))]); err != nil {
						return err
					}
				}
				_, err := c.peers[0].read(fGo)
				return err
			}
			for lo := 0; lo < len(k.bytes); lo += tcpChunk {
				if err := c.peers[0].readInto(k.bytes[lo:min(lo+tcpChunk, len(k.bytes))]); err != nil {
					return err
				}
			}
			return nil
		}
		for lo := 0; lo < len(k.bytes); lo += tcpChunk {
			hi := min(lo+tcpChunk, len(k.bytes))
			if root != 0 {
				if err := c.peers[root].readInto(k.bytes[lo:hi]); err != nil {
					return err
				}
			}
			for r := 1; r < c.size; r++ {
				if r != root {
					if err := c.peers[r].write(fData, k.bytes[lo:hi]); err != nil {
						return err
					}
				}
			}
		}
		if root != 0 {
			return c.peers[root].write(fGo)
		}
		return nil
	}()
	if err != nil {
		return c.fail(err)
	}
	return nil
}

func (c *tcpComm) Barrier() error {
	if err := c.start(call{kind: kBarrier}); err != nil {
		return err
	}
	if c.size == 1 {
		return nil
	}
	if c.rank != 0 {
		if _, err := c.peers[0].read(fGo); err != nil {
			return c.fail(err)
		}
		return nil
	}
	for r := 1; r < c.size; r++ {
		if err := c.peers[r].write(fGo); err != nil {
			return c.fail(err)
		}
	}
	return nil
}

// Fingerprint renders a configuration as a canonical "key=value" list (sorted keys), for
// TCPConfig.Fingerprint: every rank of a job must run the same model, optimizer, batch and
// seed, and the rendezvous refuses a rank that does not.
func Fingerprint(kv map[string]string) string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(kv[k])
	}
	return b.String()
}

// DiffFingerprints describes the first difference between two fingerprints, e.g.
// `batch: rank 0 has 512, the peer has 256`.
func DiffFingerprints(a, b string) string {
	parse := func(s string) map[string]string {
		m := map[string]string{}
		for _, kv := range strings.Split(s, ";") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				m[k] = v
			} else if kv != "" {
				m[kv] = ""
			}
		}
		return m
	}
	ma, mb := parse(a), parse(b)
	keys := map[string]bool{}
	for k := range ma {
		keys[k] = true
	}
	for k := range mb {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		va, oka := ma[k]
		vb, okb := mb[k]
		switch {
		case !oka:
			return fmt.Sprintf("%s: rank 0 does not set it, the peer has %q", k, vb)
		case !okb:
			return fmt.Sprintf("%s: rank 0 has %q, the peer does not set it", k, va)
		case va != vb:
			return fmt.Sprintf("%s: rank 0 has %q, the peer has %q", k, va, vb)
		}
	}
	return "fingerprints differ"
}
