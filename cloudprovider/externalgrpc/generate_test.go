package externalgrpc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The committed Go code is exactly what protoc and the pinned plugins (go.mod tool lines)
// generate from externalgrpc.proto.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("OSA_REQUIRE_TOOLS") == "1" {
			t.Fatal("protoc not found: install Debian's protobuf-compiler and libprotobuf-dev (make deps)")
		}
		t.Skip("protoc not installed (make deps installs it); skipping the regeneration check")
	}
	tool := func(name string) string {
		out, err := exec.Command("go", "tool", "-n", name).Output()
		if err != nil {
			t.Fatalf("go tool -n %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	dir := t.TempDir()
	proto, err := os.ReadFile("externalgrpc.proto")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "externalgrpc.proto"), proto, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("protoc", "--plugin=protoc-gen-go="+tool("protoc-gen-go"),
		"--plugin=protoc-gen-go-grpc="+tool("protoc-gen-go-grpc"),
		"--go_out=.", "--go_opt=paths=source_relative", "--go-grpc_out=.", "--go-grpc_opt=paths=source_relative",
		"externalgrpc.proto")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	for _, f := range []string{"externalgrpc.pb.go", "externalgrpc_grpc.pb.go"} {
		want, _ := os.ReadFile(filepath.Join(dir, f))
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what protoc generates: run `go generate ./cloudprovider/externalgrpc` and commit", f)
		}
	}
}
