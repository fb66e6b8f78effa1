package steps

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgcutover/cutover/schema"
)

// sslRequestCode is the PostgreSQL SSLRequest code (1234 << 16 | 5679).
const sslRequestCode = 80877103

// probeResolver resolves host names for network-probe. Tests point it at a
// loopback DNS server.
var probeResolver = net.DefaultResolver

// probeDial opens the TCP connections network-probe times. Tests replace it
// to keep every connection on the loopback interface.
var probeDial = func(ctx context.Context, address string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", address)
}

// Address classes, in the words network-probe reports.
const (
	classLoopback  = "loopback"
	classPrivate   = "private"
	classShared    = "shared"
	classULA       = "ula"
	classLinkLocal = "link-local"
	classPublic    = "public"
)

var (
	rfc1918 = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
	}
	rfc6598 = netip.MustParsePrefix("100.64.0.0/10")
	ulaNet  = netip.MustParsePrefix("fc00::/7")
)

func init() {
	Register(&Type{
		Name:    "network-probe",
		Summary: "Resolve a host from this runtime, classify its addresses, time a TCP connect and ask whether PostgreSQL offers TLS, without credentials.",
		Doc: "Resolves `host` (or the target's host) with this runtime's resolver, so that a private DNS zone answers " +
			"the way it will for the app, and classifies every address: loopback, private (RFC 1918), shared " +
			"(RFC 6598, 100.64.0.0/10), ula (fc00::/7), link-local or public. An IP address is used as it is. " +
			"Each address gets a TCP connect within `timeout`; on the first one that answers, the step sends the " +
			"PostgreSQL SSLRequest and reads the one-byte answer (`S`: TLS offered, `N`: not). No credentials are sent.\n\n" +
			"The step fails when the host cannot be resolved (whatever `expect` says: a typo must not pass as " +
			"unreachable), when `expect` does not hold (reachable: at least one address answers; unreachable: none " +
			"does), or, with `require_private`, when any address is public.",
		Inputs: []schema.Field{
			{Name: "target", Kind: schema.String, Ref: schema.RefTarget, Doc: "probe this target's host and port (or set host)"},
			{Name: "host", Kind: schema.String, Doc: "host name or IP address to probe (or set target)"},
			{Name: "port", Kind: schema.Int, Default: int64(5432), Doc: "TCP port; with target, overrides the target's port"},
			{Name: "expect", Kind: schema.String, Enum: []string{"reachable", "unreachable"}, Default: "reachable", Doc: "whether a TCP connection must succeed or must fail"},
			{Name: "require_private", Kind: schema.Bool, Default: false, Doc: "fail if any address is public"},
			{Name: "timeout", Kind: schema.Duration, Default: 3 * time.Second, Doc: "for the DNS lookup, each TCP connect and the SSLRequest answer"},
		},
		Outputs: []schema.Output{
			{Name: "addresses", Kind: schema.StringList, Doc: "the addresses the host resolved to, in the resolver's order"},
			{Name: "classes", Kind: schema.StringList, Doc: "the class of each address: loopback, private, shared, ula, link-local or public"},
			{Name: "private", Kind: schema.Bool, Doc: "no address is public"},
			{Name: "reachable", Kind: schema.Bool, Doc: "a TCP connection to at least one address succeeded"},
			{Name: "connect_ms", Kind: schema.Int, Doc: "TCP connect time to the first address that answered, in milliseconds; -1 when none did"},
			{Name: "tls_offered", Kind: schema.Bool, Doc: "the server answered the SSLRequest with S"},
		},
		DryRun:  "runs (it is read-only)",
		Example: "- id: net\n  type: network-probe\n  with: {target: new, expect: reachable, require_private: true}\n",
		Impl:    networkProbe{},
	})
}

type networkProbe struct{}

// dialResult is one address's TCP connect.
type dialResult struct {
	addr    netip.Addr
	conn    net.Conn
	elapsed time.Duration
	err     error
}

func (networkProbe) Run(ctx context.Context, c *Call) (Outputs, error) {
	a := c.Args
	host, port, err := probeEndpoint(c)
	if err != nil {
		return nil, err
	}
	expect := a.String("expect")
	if expect != "reachable" && expect != "unreachable" {
		return nil, Permanent(fmt.Errorf("expect is %q; it must be reachable or unreachable", expect))
	}
	timeout := a.Duration("timeout")
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	endpoint := net.JoinHostPort(host, strconv.Itoa(port))

	out := Outputs{
		"addresses": []string{}, "classes": []string{}, "private": false,
		"reachable": false, "connect_ms": int64(-1), "tls_offered": false,
	}
	addrs, err := resolveHost(ctx, host, timeout)
	if err != nil {
		return out, err
	}
	addresses, classes := make([]string, len(addrs)), make([]string, len(addrs))
	var public []string
	for i, ip := range addrs {
		addresses[i], classes[i] = ip.String(), addressClass(ip)
		if classes[i] == classPublic {
			public = append(public, addresses[i])
		}
	}
	out["addresses"], out["classes"], out["private"] = addresses, classes, len(public) == 0

	results := dialAll(ctx, addrs, port, timeout)
	var first *dialResult
	for i := range results {
		r := &results[i]
		if r.err == nil && first == nil {
			first = r
			continue
		}
		if r.conn != nil {
			_ = r.conn.Close()
		}
	}
	for i, r := range results {
		say(c, "network-probe %s: %s (%s): %s", endpoint, r.addr, classes[i], dialOutcome(r, timeout))
	}
	var problems []string
	if first != nil {
		out["reachable"] = true
		out["connect_ms"] = first.elapsed.Milliseconds()
		offered, answer := sslRequest(first.conn, timeout)
		_ = first.conn.Close()
		out["tls_offered"] = offered
		say(c, "network-probe %s: SSLRequest answer from %s: %s", endpoint, first.addr, answer)
	}

	switch {
	case expect == "reachable" && first == nil:
		var why []string
		for i, r := range results {
			why = append(why, fmt.Sprintf("%s (%s): %s", r.addr, classes[i], dialOutcome(r, timeout)))
		}
		problems = append(problems, fmt.Sprintf("%s is not reachable from this runtime: %s; check that the server listens there and that firewalls, security groups or network policies let this runtime in",
			endpoint, strings.Join(why, ", ")))
	case expect == "unreachable" && first != nil:
		problems = append(problems, fmt.Sprintf("%s is reachable from this runtime (%s answered in %d ms) but expect is unreachable",
			endpoint, first.addr, first.elapsed.Milliseconds()))
	}
	if a.Bool("require_private") && len(public) > 0 {
		problems = append(problems, fmt.Sprintf("%s resolves to public address %s from this runtime but require_private is set: use the private endpoint (VPC, private link) or this runtime's private DNS",
			host, strings.Join(public, ", ")))
	}
	if len(problems) > 0 {
		return out, errors.New(listProblems(problems))
	}
	return out, nil
}

// probeEndpoint is the host and port to probe, from target or host.
func probeEndpoint(c *Call) (string, int, error) {
	a := c.Args
	name, host := a.String("target"), strings.TrimSpace(a.String("host"))
	port := int(a.Int("port"))
	switch {
	case name != "" && host != "":
		return "", 0, Permanent(errors.New("set either target or host, not both"))
	case name == "" && host == "":
		return "", 0, Permanent(errors.New("set target, or host and port"))
	case name != "":
		if c.Targets == nil {
			return "", 0, Permanent(fmt.Errorf("no target %q", name))
		}
		t, err := c.Targets.Get(name)
		// A target missing only its password can still be probed.
		if t == nil || t.Host == "" {
			if err == nil {
				err = Permanent(fmt.Errorf("target %s has no host", name))
			}
			return "", 0, err
		}
		host = t.Host
		if !a.Has("port") {
			port = t.Port
		}
		if strings.HasPrefix(host, "/") {
			return "", 0, Permanent(fmt.Errorf("target %s connects through the Unix socket directory %s; network-probe checks TCP", name, host))
		}
		if strings.Contains(host, ",") {
			return "", 0, Permanent(fmt.Errorf("target %s names several hosts (%s); probe each one with host", name, host))
		}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if port < 1 || port > 65535 {
		return "", 0, Permanent(fmt.Errorf("port %d is not a TCP port (1-65535)", port))
	}
	return host, port, nil
}

// resolveHost returns the host's addresses as this runtime sees them; an IP
// address is returned as it is.
func resolveHost(ctx context.Context, host string, timeout time.Duration) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	found, err := probeResolver.LookupIPAddr(lctx, host)
	if err != nil {
		reason := err.Error()
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			reason = dnsErr.Err
			if dnsErr.IsTimeout {
				reason = fmt.Sprintf("no answer within %s", timeout)
			}
		}
		return nil, fmt.Errorf("cannot resolve %s from this runtime: %s; check the host name, and that this runtime uses the DNS that serves it (private zones resolve only inside their network)", host, reason)
	}
	var addrs []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, ia := range found {
		ip, ok := netip.AddrFromSlice(ia.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap().WithZone(ia.Zone)
		if !seen[ip] {
			seen[ip] = true
			addrs = append(addrs, ip)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("cannot resolve %s from this runtime: no addresses", host)
	}
	return addrs, nil
}

// addressClass names the kind of network an address belongs to.
func addressClass(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return classLoopback
	case ip.IsLinkLocalUnicast():
		return classLinkLocal
	case rfc6598.Contains(ip):
		return classShared
	case ulaNet.Contains(ip):
		return classULA
	}
	for _, p := range rfc1918 {
		if p.Contains(ip) {
			return classPrivate
		}
	}
	return classPublic
}

// dialAll connects to every address at once and keeps them in order.
func dialAll(ctx context.Context, addrs []netip.Addr, port int, timeout time.Duration) []dialResult {
	results := make([]dialResult, len(addrs))
	var wg sync.WaitGroup
	for i, ip := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			conn, err := probeDial(ctx, netip.AddrPortFrom(ip, uint16(port)).String(), timeout)
			results[i] = dialResult{addr: ip, conn: conn, elapsed: time.Since(start), err: err}
		}()
	}
	wg.Wait()
	return results
}

// dialOutcome says in a few words how a connect went.
func dialOutcome(r dialResult, timeout time.Duration) string {
	var ne net.Error
	switch {
	case r.err == nil:
		return fmt.Sprintf("connected in %.1f ms", float64(r.elapsed.Microseconds())/1000)
	case errors.Is(r.err, syscall.ECONNREFUSED):
		return "connection refused (nothing listens on that port)"
	case errors.Is(r.err, os.ErrDeadlineExceeded), errors.Is(r.err, context.DeadlineExceeded), errors.As(r.err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %s (a firewall may drop the packets)", timeout)
	case errors.Is(r.err, syscall.ENETUNREACH), errors.Is(r.err, syscall.EHOSTUNREACH):
		return "no route to the address from this runtime"
	}
	var op *net.OpError
	if errors.As(r.err, &op) {
		return op.Err.Error()
	}
	return r.err.Error()
}

// sslRequest sends the PostgreSQL SSLRequest on conn and reads the answer.
// It reports whether TLS is offered, and the answer in words.
func sslRequest(conn net.Conn, timeout time.Duration) (bool, string) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:4], 8)
	binary.BigEndian.PutUint32(req[4:8], sslRequestCode)
	if _, err := conn.Write(req[:]); err != nil {
		return false, "could not send it: " + err.Error()
	}
	var answer [1]byte
	if _, err := conn.Read(answer[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, fmt.Sprintf("none within %s (is this a PostgreSQL server?)", timeout)
		}
		return false, "none: " + err.Error() + " (is this a PostgreSQL server?)"
	}
	switch answer[0] {
	case 'S':
		return true, "S (TLS offered)"
	case 'N':
		return false, "N (TLS not offered)"
	case 'E':
		return false, "an error message instead of S or N (a very old or unusual server)"
	}
	return false, fmt.Sprintf("%q, which is not a PostgreSQL answer (is this a PostgreSQL server?)", answer[0])
}
