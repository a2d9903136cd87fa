// Package image checks hack/image, the Docker-free image build behind
// make image, as a user runs it: it builds both images for amd64 and arm64
// to an OCI image layout on disk, on no base and on a base pinned by
// digest in a registry served in-process (the real distroless base cannot
// be pulled here), and pushes them to that registry.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	moduleRoot = "../.."
	tag        = "test"
	entrypoint = "/usr/local/bin/lockstep"
	nonroot    = "65532:65532"
	// sourceDate is SOURCE_DATE_EPOCH for every build here.
	sourceDate = "1700000000"
)

var (
	binaries  = []string{"lockstep-scheduler", "lockstep-controller"}
	platforms = []string{"linux/amd64", "linux/arm64"}
	machines  = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
)

// build runs hack/image; it returns its output and error.
func build(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"run", "./hack/image"}, args...)...)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+sourceDate)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestImages(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	base, baseLayers := pushBase(t, host+"/distroless/static:nonroot")

	// Refused before anything is compiled.
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"a base by tag", []string{"--base", host + "/distroless/static:nonroot", "--out", t.TempDir()}, "pin the base by digest"},
		{"a platform the base lacks", []string{"--base", base, "--platforms", "linux/s390x", "--out", t.TempDir()}, "has no image for linux/s390x"},
		{"nowhere to put them", []string{"--base", "empty", "--out", ""}, "nowhere to put the images"},
		{"a bad tag", []string{"--base", "empty", "--tag", "no/slash", "--out", t.TempDir()}, "--tag"},
	} {
		out, err := build(t, c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: want an error saying %q, got %v:\n%s", c.name, c.want, err, out)
		}
	}

	// A folder of something else is never replaced by the layout.
	precious := t.TempDir()
	if err := os.WriteFile(filepath.Join(precious, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := build(t, "--base", "empty", "--platforms", "linux/amd64", "--binaries", "lockstep-controller", "--out", precious); err == nil || !strings.Contains(out, "not replacing it") {
		t.Errorf("--out a folder of other files: want a refusal, got %v:\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(precious, "keep")); err != nil {
		t.Errorf("--out removed a folder of other files: %v", err)
	}

	bare := filepath.Join(t.TempDir(), "oci")
	if out, err := build(t, "--base", "empty", "--out", bare, "--tag", tag); err != nil {
		t.Fatalf("building on no base: %v\n%s", err, out)
	}
	onBase := filepath.Join(t.TempDir(), "oci")
	out, err := build(t, "--base", base, "--out", onBase, "--push", host+"/lockstep", "--tag", tag)
	if err != nil {
		t.Fatalf("building on the base and pushing: %v\n%s", err, out)
	}
	t.Logf("hack/image:\n%s", out)

	bareImages := readLayout(t, bare)
	baseImages := readLayout(t, onBase)
	for _, bin := range binaries {
		pushed, err := remote.Index(mustRef(t, host+"/lockstep/"+bin+":"+tag))
		if err != nil {
			t.Fatalf("%s was not pushed: %v", bin, err)
		}
		if got, want := digest(t, pushed), digest(t, baseImages[bin]); got != want {
			t.Errorf("%s: pushed index %s, the layout's is %s", bin, got, want)
		}
		for _, p := range platforms {
			plain := imageOf(t, bareImages[bin], p)
			layered := imageOf(t, baseImages[bin], p)
			ours := checkImage(t, bin, p, plain, nil)
			on := checkImage(t, bin, p, layered, baseLayers[p])
			// The same sources give the same layer, whatever the base:
			// the build is reproducible.
			if ours != on {
				t.Errorf("%s %s: the binary's layer is %s on no base and %s on the base", bin, p, ours, on)
			}
		}
	}
}

// checkImage checks one platform's image of a binary: its config, that
// its base's layers come first unchanged, and that its last layer holds
// the binary at the entrypoint, static, for the platform's machine. It
// returns the digest of that layer.
func checkImage(t *testing.T, bin, platform string, img v1.Image, base []v1.Hash) v1.Hash {
	t.Helper()
	what := bin + " " + platform
	arch := strings.TrimPrefix(platform, "linux/")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("%s: config says %s/%s", what, cf.OS, cf.Architecture)
	}
	if cf.Config.User != nonroot || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != entrypoint {
		t.Errorf("%s: user %q, entrypoint %q; want %s and %s", what, cf.Config.User, cf.Config.Entrypoint, nonroot, entrypoint)
	}
	if cf.Config.Labels["org.opencontainers.image.title"] != bin {
		t.Errorf("%s: labels %v", what, cf.Config.Labels)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("%s: manifest media type %s", what, mt)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != len(base)+1 {
		t.Fatalf("%s: %d layers (%v), want the base's %d and one", what, len(layers), err, len(base))
	}
	for i, want := range base {
		if got, _ := layers[i].Digest(); got != want {
			t.Errorf("%s: layer %d is %s, the base's is %s", what, i, got, want)
		}
	}
	last := layers[len(layers)-1]
	data := fileIn(t, last, strings.TrimPrefix(entrypoint, "/"))
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: the entrypoint is not an ELF binary: %v", what, err)
	}
	if f.Machine != machines[arch] {
		t.Errorf("%s: binary for %s, want %s", what, f.Machine, machines[arch])
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: the binary is dynamically linked; the base has no libc", what)
		}
	}
	if arch == runtime.GOARCH {
		// It runs.
		exe := filepath.Join(t.TempDir(), bin)
		if err := os.WriteFile(exe, data, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(exe, "--help").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage") {
			t.Errorf("%s --help: %v\n%s", what, err, out)
		}
	}
	d, _ := last.Digest()
	return d
}

// fileIn reads one file of a layer, checking that it is executable.
func fileIn(t *testing.T, l v1.Layer, path string) []byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("no %s in the layer", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != path {
			continue
		}
		if h.Mode&0o111 == 0 || h.Uid != 0 {
			t.Errorf("%s: mode %o, owner %d", path, h.Mode, h.Uid)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
}

// readLayout reads an OCI layout's indexes by their ref.name, requiring
// exactly the binaries' at the tag.
func readLayout(t *testing.T, dir string) map[string]v1.ImageIndex {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.ImageIndex{}
	for _, d := range m.Manifests {
		ref := d.Annotations["org.opencontainers.image.ref.name"]
		bin, found := strings.CutSuffix(ref, ":"+tag)
		if !found || d.MediaType != types.OCIImageIndex {
			t.Fatalf("%s: entry %q of type %s", dir, ref, d.MediaType)
		}
		if out[bin], err = root.ImageIndex(d.Digest); err != nil {
			t.Fatal(err)
		}
	}
	if len(out) != len(binaries) {
		t.Fatalf("%s holds %d images, want %d", dir, len(out), len(binaries))
	}
	return out
}

// imageOf is an index's image for one platform, requiring exactly the
// platforms asked for.
func imageOf(t *testing.T, idx v1.ImageIndex, platform string) v1.Image {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != len(platforms) {
		t.Fatalf("index of %d images, want %d", len(m.Manifests), len(platforms))
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.String() == platform {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no image for %s", platform)
	return nil
}

// pushBase pushes a stand-in for distroless' static image, a
// multi-platform index whose images hold an /etc/passwd, and returns its
// reference by digest and its layers per platform.
func pushBase(t *testing.T, ref string) (string, map[string][]v1.Hash) {
	t.Helper()
	layers := map[string][]v1.Hash{}
	var adds []mutate.IndexAddendum
	for _, p := range platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		passwd := []byte("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n# " + p + "\n")
		_ = tw.WriteHeader(&tar.Header{Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd))})
		_, _ = tw.Write(passwd)
		_ = tw.Close()
		layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()), tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = plat.OS, plat.Architecture
		cf.Config.User = "65532"
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		d, _ := layer.Digest()
		layers[p] = []v1.Hash{d}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
	r := mustRef(t, ref)
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	return r.Context().Digest(digest(t, idx).String()).String(), layers
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
