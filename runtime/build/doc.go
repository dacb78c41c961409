// Package build turns a Dockerfile and a build context into an image in
// berth's node-local store (package runtime/image), the way `docker
// build` does.
//
// The Dockerfile is parsed by BuildKit's parser and instruction
// decoder (github.com/moby/buildkit/frontend/dockerfile), so berth reads
// exactly the syntax Docker reads; bad input comes back as an error that
// wraps ErrDockerfile and names the line. Evaluation is berth's own:
//
//	Build
//	 ├─ parse, pick the target stage and the stages it needs
//	 └─ for each step of each needed stage, in order
//	     ├─ key = sha256(parent image, instruction, its env/args, the
//	     │        content hashes of COPY/ADD sources)
//	     ├─ Store.CacheGet(key) → CACHED: the step's image is reused
//	     └─ otherwise run the step:
//	         RUN      a container of the current image (runtime/container,
//	                  host network or none); its overlay upperdir, once the
//	                  command exits 0, becomes a layer tar (whiteouts for
//	                  deletions, opaque dirs as .wh..wh..opq)
//	         COPY/ADD the sources (the context, with .dockerignore, or
//	                  another stage's or image's rootfs) written straight
//	                  into a layer tar
//	         others   a change of the image config only (a history entry
//	                  with empty_layer)
//	       then Store.AddLayer + Store.Commit(config, CacheKey: key)
//
// Every step's result is an ordinary image that only the cache refers
// to: it is hidden from `image ls`, survives restarts (it is in the
// store's index) and is removed by Store.PruneBuildCache (system prune).
// The final image is the last step's, given the tags. A failing RUN ends
// the build with a *StepError (its exit code and the last lines of its
// output); steps that succeeded before it stay cached, and no tag is
// written.
//
// Builder.Build takes the context as a directory; ContextTar makes the
// tar stream a client uploads (with .dockerignore applied), and
// Builder.Context unpacks an upload safely (ExtractContext) on the node,
// once per content: a rebuild that uploads the same bytes reuses the tree.
//
// Supported beyond the basics: ARG before FROM and --build-arg, the
// BUILDPLATFORM/TARGETPLATFORM family of ARGs, --target, COPY --from a
// stage (by name or number) or an image, COPY/ADD --chown and --chmod,
// ADD of local tar archives (plain, gzip, bzip2), RUN --network, SHELL,
// HEALTHCHECK, ONBUILD (stored; a base image's triggers run after FROM).
// Refused with a line-numbered error: here-documents, RUN --mount, ADD
// from a URL or git, COPY --parents/--exclude.
package build
