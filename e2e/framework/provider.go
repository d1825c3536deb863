package framework

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/externalgrpc"
)

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildErr = map[string]error{}
)

// Binary builds ./cmd/<name> once per test process and returns its path.
func Binary(t testing.TB, name string) string { return BinaryOf(t, name, "./cmd/"+name) }

// BinaryOf builds the package pkg (of this module or of one it requires) as name, once per test
// process, and returns its path.
func BinaryOf(t testing.TB, name, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, done := built[name]; !done {
		out, _ := filepath.Abs("../_output/bin/" + name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = ".."
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr[name] = fmt.Errorf("building %s: %v\n%s", name, err, b)
		}
		built[name] = out
	}
	if err := buildErr[name]; err != nil {
		t.Fatal(err)
	}
	return built[name]
}

// ChildAttrs puts a child in its own process group and has the kernel end it if the test process
// dies first (a killed test must not leave its processes behind).
func ChildAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// ProviderBinary builds cmd/openstack-provider once per test process.
func ProviderBinary(t testing.TB) string { return Binary(t, "openstack-provider") }

// Start runs a command until the test ends (SIGTERM, then SIGKILL), logging to the test's temp
// dir, or to $OSA_E2E_LOG_DIR when that is set (kept after the run); the log is shown when the
// test fails.
func Start(t testing.TB, name string, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd, _ := StartLogged(t, name, bin, args...)
	return cmd
}

// StartLogged is Start, also returning the path of the command's log.
func StartLogged(t testing.TB, name string, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	if dir := os.Getenv("OSA_E2E_LOG_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		logPath = filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"+name+".log")
	}
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = ChildAttrs()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		log.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s log:\n%s", name, Tail(string(b), 3000))
			}
		}
	})
	return cmd, logPath
}

// Provider is a running openstack-provider process started by a test.
type Provider struct {
	Addr, HTTPAddr string
	Client         pb.CloudProviderClient
	cmd            *exec.Cmd
	conn           *grpc.ClientConn
	logPath        string
}

// FreeAddr returns a free 127.0.0.1 port.
func FreeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartProvider writes configYAML to a file and runs the provider on free ports until the test
// ends (or Kill/Stop), logging to the test's temp dir.
func StartProvider(t testing.TB, configYAML string, extraArgs ...string) *Provider {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "provider.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Provider{Addr: FreeAddr(t), HTTPAddr: FreeAddr(t), logPath: filepath.Join(dir, "provider.log")}
	p.start(t, cfgPath, extraArgs)
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(p.logPath); err == nil {
				t.Logf("provider log:\n%s", Tail(string(b), 4000))
			}
		}
	})
	return p
}

func (p *Provider) start(t testing.TB, cfgPath string, extraArgs []string) {
	t.Helper()
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--config", cfgPath, "--listen", p.Addr, "--http-listen", p.HTTPAddr}, extraArgs...)
	p.cmd = exec.Command(ProviderBinary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = ChildAttrs()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 60*time.Second, 200*time.Millisecond, "provider ready", func() (bool, error) {
		if p.cmd.ProcessState != nil {
			return false, fmt.Errorf("provider exited")
		}
		resp, err := http.Get("http://" + p.HTTPAddr + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == 200, fmt.Errorf("readyz %d", resp.StatusCode)
	})
	if p.conn, err = grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	p.Client = pb.NewCloudProviderClient(p.conn)
}

// Restart starts the same process again after Stop or Kill.
func (p *Provider) Restart(t testing.TB) {
	t.Helper()
	args := p.cmd.Args[1:] // --config FILE --listen ADDR --http-listen ADDR EXTRA...
	p.start(t, args[1], args[6:])
}

// Kill ends the provider at once (SIGKILL), as a crash would.
func (p *Provider) Kill() { p.signal(syscall.SIGKILL) }

// Stop ends the provider gracefully.
func (p *Provider) Stop() { p.signal(syscall.SIGTERM) }

func (p *Provider) signal(sig syscall.Signal) {
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
	if p.cmd == nil || p.cmd.Process == nil || p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// Metrics fetches the provider's /metrics text.
func (p *Provider) Metrics(ctx context.Context) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTPAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Tail is the last n bytes of s (for logs shown when a test fails).
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
