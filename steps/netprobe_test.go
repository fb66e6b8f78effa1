package steps

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgcutover/cutover/schema"
	"github.com/pgcutover/cutover/steps/pgtest"
)

// loopbackOnly keeps network-probe on the loopback interface for one test:
// names resolve through a DNS server on 127.0.0.1 that knows only records,
// and a connection to any other address is refused without a packet sent.
// It returns the addresses the probe tried to reach.
func loopbackOnly(t *testing.T, records map[string][]netip.Addr) *[]string {
	t.Helper()
	dns := startTestDNS(t, records)
	var mu sync.Mutex
	var dialed []string
	oldResolver, oldDial := probeResolver, probeDial
	probeResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dns)
	}}
	probeDial = func(ctx context.Context, address string, timeout time.Duration) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, address)
		mu.Unlock()
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !ap.Addr().IsLoopback() {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		return oldDial(ctx, address, timeout)
	}
	t.Cleanup(func() { probeResolver, probeDial = oldResolver, oldDial })
	return &dialed
}

// startTestDNS answers A and AAAA queries for records on a loopback UDP
// port, and NXDOMAIN for any other name. It returns its address.
func startTestDNS(t *testing.T, records map[string][]netip.Addr) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := dnsReply(buf[:n], records); reply != nil {
				_, _ = pc.WriteTo(reply, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// dnsReply builds the answer to one DNS query with a single question.
func dnsReply(q []byte, records map[string][]netip.Addr) []byte {
	if len(q) < 12 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	question := q[12 : i+5]
	name := strings.ToLower(strings.Join(labels, "."))
	addrs, known := records[name]
	var answers [][]byte
	for _, a := range addrs {
		if (qtype == 1 && a.Is4()) || (qtype == 28 && a.Is6()) {
			rr := []byte{0xc0, 12}
			rr = binary.BigEndian.AppendUint16(rr, qtype)
			rr = binary.BigEndian.AppendUint16(rr, 1)
			rr = binary.BigEndian.AppendUint32(rr, 60)
			raw := a.AsSlice()
			rr = binary.BigEndian.AppendUint16(rr, uint16(len(raw)))
			answers = append(answers, append(rr, raw...))
		}
	}
	flags := uint16(0x8180) // response, recursion desired and available
	if !known {
		flags |= 3 // NXDOMAIN
	}
	out := binary.BigEndian.AppendUint16(nil, binary.BigEndian.Uint16(q))
	out = binary.BigEndian.AppendUint16(out, flags)
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(answers)))
	out = append(out, 0, 0, 0, 0)
	out = append(out, question...)
	for _, a := range answers {
		out = append(out, a...)
	}
	return out
}

// runProbe runs network-probe with the given inputs.
func runProbe(t *testing.T, with map[string]any, targets *Targets) (Outputs, error, string) {
	t.Helper()
	c, live := newCall(t, "network-probe", with, targets)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := networkProbe{}.Run(ctx, c)
	return out, err, live.String()
}

// closedPort returns a loopback port that nothing listens on any more.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestNetworkProbeTargetOnTLSCluster(t *testing.T) {
	loopbackOnly(t, nil)
	cl := pgtest.Start(t, pgtest.Options{TLS: pgtest.TLSEnforced})
	ts := newTargets(t, nil, &schema.Target{Name: "new", Host: cl.Host, Port: cl.Port, DBName: "app", User: "app"})
	out, err, live := runProbe(t, map[string]any{"target": "new", "require_private": true}, ts)
	if err != nil {
		t.Fatalf("network-probe: %v", err)
	}
	wantOutputs(t, out, Outputs{"addresses": []string{"127.0.0.1"}, "classes": []string{"loopback"}, "private": true, "reachable": true, "tls_offered": true})
	if ms := out["connect_ms"].(int64); ms < 0 || ms > 1000 {
		t.Errorf("connect_ms = %d", ms)
	}
	endpoint := fmt.Sprintf("127.0.0.1:%d", cl.Port)
	wantPrefix := "network-probe " + endpoint + ": 127.0.0.1 (loopback): connected in "
	wantSuffix := " ms\nnetwork-probe " + endpoint + ": SSLRequest answer from 127.0.0.1: S (TLS offered)\n"
	if !strings.HasPrefix(live, wantPrefix) || !strings.HasSuffix(live, wantSuffix) {
		t.Errorf("live output:\n got: %q\nwant: %q…%q", live, wantPrefix, wantSuffix)
	}
}

func TestNetworkProbeTLSNotOffered(t *testing.T) {
	loopbackOnly(t, map[string][]netip.Addr{"db.test.internal": {netip.MustParseAddr("127.0.0.1")}})
	cl := pgtest.Start(t, pgtest.Options{TLS: pgtest.TLSOff})
	out, err, _ := runProbe(t, map[string]any{"host": "db.test.internal", "port": cl.Port}, nil)
	if err != nil {
		t.Fatalf("network-probe: %v", err)
	}
	wantOutputs(t, out, Outputs{"addresses": []string{"127.0.0.1"}, "classes": []string{"loopback"}, "reachable": true, "tls_offered": false})
}

func TestNetworkProbeClosedPort(t *testing.T) {
	loopbackOnly(t, nil)
	port := closedPort(t)
	t.Run("expect reachable fails", func(t *testing.T) {
		out, err, _ := runProbe(t, map[string]any{"host": "127.0.0.1", "port": port}, nil)
		wantError(t, err, fmt.Sprintf("127.0.0.1:%d is not reachable from this runtime: 127.0.0.1 (loopback): connection refused (nothing listens on that port); "+
			"check that the server listens there and that firewalls, security groups or network policies let this runtime in", port))
		wantOutputs(t, out, Outputs{"reachable": false, "connect_ms": int64(-1), "tls_offered": false, "private": true})
	})
	t.Run("expect unreachable passes", func(t *testing.T) {
		out, err, _ := runProbe(t, map[string]any{"host": "127.0.0.1", "port": port, "expect": "unreachable"}, nil)
		if err != nil {
			t.Fatalf("network-probe: %v", err)
		}
		wantOutputs(t, out, Outputs{"reachable": false, "addresses": []string{"127.0.0.1"}, "classes": []string{"loopback"}})
	})
}

func TestNetworkProbeExpectUnreachableButReachable(t *testing.T) {
	loopbackOnly(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("N"))
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	out, err, _ := runProbe(t, map[string]any{"host": "127.0.0.1", "port": port, "expect": "unreachable"}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	if want := " ms) but expect is unreachable"; !strings.HasPrefix(err.Error(), fmt.Sprintf("127.0.0.1:%d is reachable from this runtime (127.0.0.1 answered in ", port)) || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("error: %s", err)
	}
	wantOutputs(t, out, Outputs{"reachable": true, "tls_offered": false})
}

func TestNetworkProbeUnresolvableHost(t *testing.T) {
	dialed := loopbackOnly(t, nil)
	for _, expect := range []string{"reachable", "unreachable"} {
		out, err, _ := runProbe(t, map[string]any{"host": "no-such-host.invalid", "expect": expect}, nil)
		wantError(t, err, "cannot resolve no-such-host.invalid from this runtime: no such host; check the host name, and that this runtime uses the DNS that serves it (private zones resolve only inside their network)")
		wantOutputs(t, out, Outputs{"addresses": []string{}, "reachable": false})
	}
	if len(*dialed) > 0 {
		t.Errorf("dialed %v for a name that does not resolve", *dialed)
	}
}

func TestNetworkProbeRequirePrivate(t *testing.T) {
	dialed := loopbackOnly(t, map[string][]netip.Addr{
		"db.example.test": {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
	})
	port := closedPort(t)
	t.Run("loopback is not public", func(t *testing.T) {
		_, err, _ := runProbe(t, map[string]any{"host": "127.0.0.1", "port": port, "require_private": true, "expect": "unreachable"}, nil)
		if err != nil {
			t.Errorf("network-probe: %v", err)
		}
	})
	t.Run("public addresses fail", func(t *testing.T) {
		out, err, _ := runProbe(t, map[string]any{"host": "db.example.test", "port": port, "require_private": true, "expect": "unreachable"}, nil)
		// The resolver orders addresses by what this machine can route (RFC 6724).
		addrs, classes := out["addresses"].([]string), out["classes"].([]string)
		got := map[string]string{}
		var public []string
		for i, a := range addrs {
			got[a] = classes[i]
			if classes[i] == "public" {
				public = append(public, a)
			}
		}
		if want := map[string]string{"127.0.0.1": "loopback", "192.0.2.10": "public", "2001:db8::10": "public"}; !maps.Equal(got, want) || len(addrs) != len(classes) {
			t.Errorf("addresses %q, classes %q; want %v", addrs, classes, want)
		}
		wantError(t, err, "db.example.test resolves to public address "+strings.Join(public, ", ")+" from this runtime but require_private is set: use the private endpoint (VPC, private link) or this runtime's private DNS")
		wantOutputs(t, out, Outputs{"private": false})
	})
	for _, d := range *dialed {
		if ap := netip.MustParseAddrPort(d); !ap.Addr().IsLoopback() {
			t.Logf("refused in the test (never sent): %s", d)
		}
	}
}

func TestNetworkProbeInputs(t *testing.T) {
	loopbackOnly(t, nil)
	ts := newTargets(t, nil, &schema.Target{Name: "new", Host: "/var/run/postgresql", DBName: "app"})
	for _, tc := range []struct {
		with map[string]any
		want string
	}{
		{map[string]any{}, "set target, or host and port"},
		{map[string]any{"target": "new", "host": "127.0.0.1"}, "set either target or host, not both"},
		{map[string]any{"target": "new"}, "target new connects through the Unix socket directory /var/run/postgresql; network-probe checks TCP"},
		{map[string]any{"target": "old"}, `no target "old"`},
		{map[string]any{"host": "127.0.0.1", "port": 70000}, "port 70000 is not a TCP port (1-65535)"},
		{map[string]any{"host": "127.0.0.1", "expect": "maybe"}, `expect is "maybe"; it must be reachable or unreachable`},
	} {
		_, err, _ := runProbe(t, tc.with, ts)
		wantError(t, err, tc.want)
		if !IsPermanent(err) {
			t.Errorf("%v: the error is not Permanent", tc.with)
		}
	}
}

func TestNetworkProbeAddressClasses(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1":        "loopback",
		"127.255.0.9":      "loopback",
		"::1":              "loopback",
		"10.1.2.3":         "private",
		"172.16.0.1":       "private",
		"172.31.255.254":   "private",
		"172.32.0.1":       "public",
		"192.168.10.10":    "private",
		"100.64.0.1":       "shared",
		"100.127.255.254":  "shared",
		"100.128.0.1":      "public",
		"fd12:3456::1":     "ula",
		"fc00::1":          "ula",
		"169.254.169.254":  "link-local",
		"fe80::1":          "link-local",
		"8.8.8.8":          "public",
		"2600:1f18::1":     "public",
		"::ffff:10.0.0.1":  "private",
		"::ffff:52.1.2.3":  "public",
		"192.0.2.10":       "public",
		"11.0.0.1":         "public",
		"192.169.0.1":      "public",
		"::ffff:127.0.0.1": "loopback",
	} {
		if got := addressClass(netip.MustParseAddr(addr)); got != want {
			t.Errorf("addressClass(%s) = %s, want %s", addr, got, want)
		}
	}
}
