// Command image builds Lockstep's container images without a Docker
// engine, with go-containerregistry: each binary is compiled static for
// every platform, put in one layer on a base image pinned by digest, and
// the images of a binary are gathered in one multi-platform index. The
// indexes are written to an OCI image layout on disk (--out) and, with
// --push, to a registry.
//
// The build is reproducible: layer files and image creation times come
// from SOURCE_DATE_EPOCH, else the last commit's time, so the same
// sources give the same digests.
//
//	go run ./hack/image --out bin/oci                      # both images, amd64 and arm64
//	go run ./hack/image --base empty --out bin/oci         # no base to pull: offline
//	go run ./hack/image --push ghcr.io/lockstep-sched --tag v0.3.0
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultBase is distroless' static image, nonroot variant, pinned by the
// digest of its multi-platform index: the tag moves, the digest does not.
const DefaultBase = "gcr.io/distroless/static:nonroot@sha256:e2e927ec666bae08560abb3c55d0659eceabb657f56b6782ab500a9fc7f555e3"

// Empty names no base: the image holds the binary alone. The binaries are
// static and need no file of a base; distroless adds CA certificates,
// time zones and /etc/passwd.
const Empty = "empty"

// Entrypoint is where the binary goes in every image, the path the
// Dockerfile uses too.
const Entrypoint = "/usr/local/bin/lockstep"

// Nonroot is distroless' nonroot user, set on every image so that an
// image on another base, or none, does not run as root.
const Nonroot = "65532:65532"

// Source is the repository, for the images' source label.
const Source = "https://github.com/lockstep-sched/lockstep"

type options struct {
	binaries  []string
	platforms []v1.Platform
	base      string
	out       string
	push      string
	tag       string
	goCmd     string
}

func main() {
	var o options
	var binaries, platforms string
	flag.StringVar(&binaries, "binaries", "lockstep-scheduler,lockstep-controller", "commands under ./cmd to build, one image each")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "platforms of every image")
	flag.StringVar(&o.base, "base", DefaultBase, "base image, pinned by digest, or \""+Empty+"\" for none")
	flag.StringVar(&o.out, "out", "bin/oci", "OCI image layout to write, replaced; \"\" for none")
	flag.StringVar(&o.push, "push", "", "registry and path to push to, e.g. ghcr.io/lockstep-sched; each image goes to <push>/<binary>:<tag>")
	flag.StringVar(&o.tag, "tag", "latest", "tag of the images")
	flag.StringVar(&o.goCmd, "go", "go", "go command")
	flag.Parse()
	o.binaries = splitList(binaries)
	for _, p := range splitList(platforms) {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			fail(fmt.Errorf("--platforms: %w", err))
		}
		o.platforms = append(o.platforms, *plat)
	}
	if err := run(context.Background(), o); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(ctx context.Context, o options) error {
	if len(o.binaries) == 0 || len(o.platforms) == 0 {
		return errors.New("nothing to build: give --binaries and --platforms")
	}
	if _, err := name.NewTag("example.com/lockstep:" + o.tag); err != nil {
		return fmt.Errorf("--tag %q: %w", o.tag, err)
	}
	if o.out == "" && o.push == "" {
		return errors.New("nowhere to put the images: give --out, --push or both")
	}
	if o.out != "" {
		if err := replaceable(o.out); err != nil {
			return err
		}
	}
	created, err := sourceDate()
	if err != nil {
		return err
	}
	revision := gitRevision()
	bases, err := basesFor(ctx, o.base, o.platforms)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "lockstep-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	built := map[string]map[string]string{} // platform -> binary -> path
	for _, p := range o.platforms {
		dir := filepath.Join(work, strings.ReplaceAll(p.String(), "/", "-"))
		if built[p.String()], err = compile(o.goCmd, p, o.binaries, dir); err != nil {
			return err
		}
	}
	indexes := map[string]v1.ImageIndex{}
	for _, bin := range o.binaries {
		var adds []mutate.IndexAddendum
		for _, p := range o.platforms {
			img, err := imageFor(bases[p.String()], built[p.String()][bin], p, imageLabels(bin, revision, o.base), created)
			if err != nil {
				return fmt.Errorf("%s for %s: %w", bin, p, err)
			}
			plat := p
			adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
		}
		idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
		indexes[bin] = idx
		d, err := idx.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s:%s %s\n", bin, o.tag, d)
	}
	if o.out != "" {
		if err := writeLayout(o.out, o.binaries, indexes, o.tag); err != nil {
			return err
		}
		fmt.Printf("wrote OCI image layout %s\n", o.out)
	}
	if o.push != "" {
		for _, bin := range o.binaries {
			ref, err := name.NewTag(strings.TrimSuffix(o.push, "/") + "/" + bin + ":" + o.tag)
			if err != nil {
				return fmt.Errorf("--push: %w", err)
			}
			if err := remote.WriteIndex(ref, indexes[bin], remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
				return fmt.Errorf("pushing %s: %w", ref, err)
			}
			d, _ := indexes[bin].Digest()
			fmt.Printf("pushed %s@%s\n", ref, d)
		}
	}
	return nil
}

// sourceDate is the time stamped on layer files and images:
// SOURCE_DATE_EPOCH, else the last commit's, else the epoch.
func sourceDate() (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	out, err := exec.Command("git", "log", "-1", "--format=%ct").Output()
	if err != nil {
		return time.Unix(0, 0).UTC(), nil // not a git checkout
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Unix(0, 0).UTC(), nil
	}
	return time.Unix(sec, 0).UTC(), nil
}

func gitRevision() string {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// basesFor fetches the base image of every platform: from a pinned
// multi-platform index, or a pinned single image of the one platform
// asked for.
func basesFor(ctx context.Context, base string, platforms []v1.Platform) (map[string]v1.Image, error) {
	out := map[string]v1.Image{}
	if base == Empty {
		// An OCI image, as the layer will be.
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		for _, p := range platforms {
			out[p.String()] = img
		}
		return out, nil
	}
	ref, err := name.ParseReference(base)
	if err != nil {
		return nil, fmt.Errorf("--base %q: %w", base, err)
	}
	if _, ok := ref.(name.Digest); !ok {
		return nil, fmt.Errorf("--base %q: pin the base by digest (name@sha256:...), a tag can change under a rebuild", base)
	}
	desc, err := remote.Get(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return nil, fmt.Errorf("fetching base %s (give --base %s to build without one): %w", base, Empty, err)
	}
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		if err != nil {
			return nil, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		for _, p := range platforms {
			if !platformMatches(cf.Platform(), p) {
				return nil, fmt.Errorf("base %s is a single image for %s, not %s: pin a multi-platform index", base, cf.Platform(), p)
			}
			out[p.String()] = img
		}
		return out, nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, p := range platforms {
		found := false
		for _, m := range manifest.Manifests {
			if m.Platform == nil || !platformMatches(m.Platform, p) {
				continue
			}
			img, err := idx.Image(m.Digest)
			if err != nil {
				return nil, fmt.Errorf("base %s for %s: %w", base, p, err)
			}
			out[p.String()], found = img, true
			break
		}
		if !found {
			return nil, fmt.Errorf("base %s has no image for %s", base, p)
		}
	}
	return out, nil
}

// platformMatches reports whether have serves want: same OS and
// architecture, and the variant when want names one.
func platformMatches(have *v1.Platform, want v1.Platform) bool {
	if have == nil || have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	return want.Variant == "" || have.Variant == want.Variant
}

// compile builds static binaries of the commands for one platform.
func compile(goCmd string, p v1.Platform, binaries []string, dir string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", dir + string(filepath.Separator)}
	for _, b := range binaries {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.Command(goCmd, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm" && p.Variant != "" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build for %s: %w\n%s", p, err, out)
	}
	fmt.Fprintf(os.Stderr, "built %s for %s in %s\n", strings.Join(binaries, ", "), p, time.Since(start).Round(time.Second))
	paths := map[string]string{}
	for _, b := range binaries {
		paths[b] = filepath.Join(dir, b)
	}
	return paths, nil
}

// imageLabels are the OCI labels of one binary's image.
func imageLabels(bin, revision, base string) map[string]string {
	labels := map[string]string{
		"org.opencontainers.image.title":  bin,
		"org.opencontainers.image.source": Source,
	}
	if revision != "" {
		labels["org.opencontainers.image.revision"] = revision
	}
	if base != Empty {
		labels["org.opencontainers.image.base.name"] = base
	}
	return labels
}

// imageFor puts the binary on the base as Entrypoint, run by the nonroot
// user.
func imageFor(base v1.Image, binary string, p v1.Platform, labels map[string]string, created time.Time) (v1.Image, error) {
	mt, err := base.MediaType()
	if err != nil {
		return nil, err
	}
	layerType := types.OCILayer
	if mt == types.DockerManifestSchema2 {
		layerType = types.DockerLayer // one manifest, one family of media types
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	tarBytes, err := layerTar(Entrypoint, data, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(layerType))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "lockstep hack/image: " + filepath.Base(binary) + " at " + Entrypoint,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config.Entrypoint = []string{Entrypoint}
	cf.Config.Cmd = nil
	cf.Config.User = Nonroot
	cf.Config.WorkingDir = "/"
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for k, v := range labels {
		cf.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, v1.Time{Time: created})
}

// layerTar is a layer holding one executable file and its directories,
// owned by root, stamped with the source date.
func layerTar(path string, data []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	rel := strings.TrimPrefix(path, "/")
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.Join(parts[:i], "/") + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o755, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// replaceable refuses an --out that holds something other than an
// earlier layout.
func replaceable(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("--out %s: not empty and not an OCI image layout; not replacing it", dir)
		}
	}
	return nil
}

// writeLayout replaces dir with an OCI image layout holding one index per
// binary, named <binary>:<tag> as skopeo, crane and podman read it
// (oci:<dir>:<binary>:<tag>).
func writeLayout(dir string, binaries []string, indexes map[string]v1.ImageIndex, tag string) error {
	if err := replaceable(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing %s: %w", dir, err)
	}
	for _, bin := range binaries {
		if err := p.AppendIndex(indexes[bin], layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": bin + ":" + tag,
		})); err != nil {
			return fmt.Errorf("writing %s to %s: %w", bin, dir, err)
		}
	}
	return nil
}
