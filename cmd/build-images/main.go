// Command build-images packs the product's static binaries into OCI images without a Docker
// engine, with github.com/google/go-containerregistry: one layer holding the binary, the host's
// CA bundle and a passwd/group naming the non-root user 65532, the same image the Dockerfiles
// describe (FROM gcr.io/distroless/static:nonroot). It writes an OCI image layout holding every
// image (tagged <registry>/<binary>:<tag>, as the Helm chart's defaults name them) and a tarball
// per image for `docker load` / `ctr images import`.
//
//	build-images --bin-dir _output/images/bin --out _output/images --registry ghcr.io/openstack-autoscaler --tag 0.1.0 \
//	  openstack-provider connection-agent connection-metrics-adapter
//
// It has its own Go module so the product's go.mod does not carry an image library.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const nonroot = 65532

func main() {
	binDir := flag.String("bin-dir", "_output/images/bin", "directory holding the static binaries")
	out := flag.String("out", "_output/images", "output directory: oci/ (an OCI image layout) and <binary>.tar")
	registry := flag.String("registry", "ghcr.io/openstack-autoscaler", "image repository prefix")
	tag := flag.String("tag", "", "image tag (the chart's appVersion)")
	caBundle := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates copied into the images (for HTTPS to OpenStack)")
	version := flag.String("version", "", "org.opencontainers.image.version label (default: --tag)")
	flag.Parse()
	if *tag == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: build-images --tag <tag> [flags] <binary>...   (--tag is the chart's appVersion)")
		os.Exit(2)
	}
	if *version == "" {
		*version = *tag
	}
	if err := run(*binDir, *out, *registry, *tag, *caBundle, *version, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "build-images:", err)
		os.Exit(1)
	}
}

func run(binDir, out, registry, tag, caBundle, version string, binaries []string) error {
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return fmt.Errorf("--ca-bundle: %w (install Debian's ca-certificates, or point at another bundle)", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	ociDir := filepath.Join(out, "oci")
	if err := os.RemoveAll(ociDir); err != nil {
		return err
	}
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		return err
	}
	for _, bin := range binaries {
		ref, err := name.NewTag(registry + "/" + bin + ":" + tag)
		if err != nil {
			return fmt.Errorf("image name for %s: %w", bin, err)
		}
		img, err := build(filepath.Join(binDir, bin), bin, ca, version)
		if err != nil {
			return fmt.Errorf("%s: %w", bin, err)
		}
		if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": ref.String(),
		})); err != nil {
			return err
		}
		tarPath := filepath.Join(out, bin+".tar")
		if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
			return err
		}
		digest, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s %s (%s)\n", ref, digest, tarPath)
	}
	fmt.Printf("OCI layout with every image: %s\n", ociDir)
	return nil
}

// build makes the image of one binary: /<bin> as entrypoint, running as 65532:65532.
func build(binPath, bin string, ca []byte, version string) (v1.Image, error) {
	exe, err := os.ReadFile(binPath)
	if err != nil {
		return nil, fmt.Errorf("%w (build it first: CGO_ENABLED=0 go build -o %s ./cmd/%s)", err, binPath, bin)
	}
	if len(exe) < 4 || string(exe[1:4]) != "ELF" {
		return nil, fmt.Errorf("%s is not an ELF binary", binPath)
	}
	files := []file{
		{path: "etc/", dir: true, mode: 0o755},
		{path: "etc/passwd", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonroot, nonroot))},
		{path: "etc/group", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonroot))},
		{path: "etc/ssl/", dir: true, mode: 0o755},
		{path: "etc/ssl/certs/", dir: true, mode: 0o755},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{path: "home/", dir: true, mode: 0o755},
		{path: "home/nonroot/", dir: true, mode: 0o700, uid: nonroot},
		{path: "tmp/", dir: true, mode: 0o1777},
		{path: bin, mode: 0o755, data: exe},
	}
	layerTar, err := tarOf(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()} // reproducible
	cf.Config.Entrypoint = []string{"/" + bin}
	cf.Config.User = fmt.Sprintf("%d:%d", nonroot, nonroot)
	cf.Config.WorkingDir = "/home/nonroot"
	cf.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   bin,
		"org.opencontainers.image.source":  "https://github.com/openstack-autoscaler/openstack-autoscaler",
		"org.opencontainers.image.version": version,
	}
	return mutate.ConfigFile(img, cf)
}

type file struct {
	path string
	dir  bool
	mode int64
	uid  int
	data []byte
}

// tarOf writes the layer with fixed times and owners, so the same binaries give the same digest.
func tarOf(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.path, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
