// Package image is berth's node-local, content-addressed image store.
//
// An image comes in as any go-containerregistry v1.Image (Add: an OCI
// layout, a registry pull, a tarball), as a rootfs tar (Import, like
// `docker import`), or as a `docker save` / OCI image archive (Load). The
// store keeps it on disk as:
//
//	ROOT/                          (the agent passes DATA_DIR/images)
//	  index.json                   names -> image ID, per-image metadata, per-layer sizes
//	  blobs/sha256/HEX             configs, manifests and compressed layer blobs
//	  layers/sha256/DIFFIDHEX/     each layer unpacked once, keyed by its diffID
//	  tmp/                         work in progress (removed when its process is gone)
//	  lock                         flock(2) held while index.json changes
//
// An image ID is the digest of its config (as Docker has it); Image.Digest
// is its manifest's digest. Names are kept in familiar form
// ("busybox:latest", "localhost:5000/app:v1"); see ParseName.
//
// Compressed layer blobs are kept next to the unpacked trees. That costs
// disk, but Save and a later registry push can serve the exact bytes a
// registry gave (byte-identical layers, the same manifest digest) without
// compressing again. Layers that arrive uncompressed (`docker save`
// archives, Import) are gzip-compressed once, in the same pass that
// unpacks them, and the store writes its own manifest for them.
//
// # Layers
//
// A layer is streamed once: the blob goes to a temporary file while it is
// hashed, the decompressed tar is hashed (its diffID is verified) and
// unpacked by Extract into a temporary directory. Only when every digest
// matches are the blob and the directory renamed into place, so a crash or
// a corrupt download never leaves a half-unpacked layer that looks
// complete. A per-diffID lock makes concurrent Adds of images that share a
// layer unpack it once; a layer already present is skipped. Layers of one
// image are processed in parallel.
//
// LayerDirs returns an image's unpacked directories, lowest layer first.
// They are overlayfs-ready: whiteouts are 0/0 character devices and opaque
// directories carry trusted.overlay.opaque=y, so the container runtime
// mounts them (reversed) as lowerdirs without copying a file.
//
// Layer trees are not fsynced file by file (index.json and the small
// blobs are): a process crash never leaves a half-unpacked layer in
// layers/, but after a power loss a layer may need to be removed and
// loaded or pulled again. lowerdir paths are absolute, about 100 bytes a
// layer, so a single overlay mount option holds some 40 layers; a runtime
// that needs more mounts with relative paths from the store root.
//
// # Progress
//
// Add, Import and Load report per-layer progress to the function that
// WithProgress puts in their context ("Already exists", "Downloading",
// "Done"); without one they report nothing.
//
// # Registries
//
// Pull fetches an image from a registry (Docker v2 or OCI manifest, or the
// host's — or PullOptions.Platform's — image from an index) and stores it
// through Add, so layers stream once, are verified and are unpacked
// without a half layer ever being visible; layers already stored are not
// downloaded. Concurrent Pulls of one reference in a process share one
// download. Push uploads a stored image; the registry client skips blobs
// the registry has. Both take credentials (Auth, or a keychain; by default
// the docker config's, with its credential helpers) and may be told a
// registry is insecure (plain HTTP, unverified TLS), per call or through
// BERTH_INSECURE_REGISTRIES for the agent's own pulls. Failures wrap
// ErrUnauthorized, ErrUnknownManifest, ErrRegistryUnreachable,
// ErrNoPlatform or ErrDigestMismatch. Credentials never appear in errors
// or logs (Auth's String hides them). Prune removes dangling (or all)
// images that are not in use.
//
// # Builds
//
// Dockerfile builds (package runtime/build) store each step's result
// through AddLayer (an uncompressed layer tar, unpacked once and kept as
// a gzip blob) and Commit (an image from a config whose layers are
// stored; the store writes its manifest). Commit with a CacheKey records
// the image in index.json's build cache, so CacheGet finds it after a
// restart. An image only the cache refers to is hidden from List and
// kept by Prune; PruneBuildCache (system prune) drops the cache and
// removes those images. MarkBuilt makes an unnamed build result an
// ordinary (dangling) image.
//
// # Concurrency
//
// A Store is safe for use by many goroutines. index.json is replaced
// atomically (temp file, fsync, rename) under an in-process mutex and an
// flock, so another process (a CLI running beside the agent) sees either
// the old or the new index. Remove deletes layers and blobs no other image
// uses; ones that an Add in this process is still writing are kept.
// Whether a container still uses an image is the caller's question: the
// agent checks before it calls Remove.
package image
