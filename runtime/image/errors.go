package image

import "errors"

// Errors returned by this package. Check them with errors.Is; the returned
// errors wrap them with the offending name, reference or layer entry.
var (
	// ErrNotFound is returned when no stored image matches a reference.
	ErrNotFound = errors.New("image: no such image")
	// ErrAmbiguous is returned when an ID prefix matches several images;
	// give more hex digits.
	ErrAmbiguous = errors.New("image: ID prefix matches several images; give more digits")
	// ErrInvalidName is returned for an image name that is not a valid
	// reference such as "busybox", "busybox:1.36" or "localhost:5000/app:v1".
	ErrInvalidName = errors.New("image: invalid image name")
	// ErrBadArchive is returned for an image archive, config, manifest or
	// layer that cannot be read: truncated, corrupt, or of an unknown format.
	ErrBadArchive = errors.New("image: bad image archive")
	// ErrDigestMismatch is returned when content does not hash to the digest
	// that its manifest or config promised. Nothing of it is stored.
	ErrDigestMismatch = errors.New("image: content does not match its digest")
	// ErrUnsafePath is returned for a layer entry that would write outside
	// the layer's directory: an absolute path, a ".." component, a path
	// through a symlink, or a hardlink to something that is not a regular
	// file of the layer.
	ErrUnsafePath = errors.New("image: unsafe path in layer")
	// ErrUnsupportedEntry is returned for a layer entry berth refuses to
	// create: device nodes (other than whiteouts) and unknown tar types.
	ErrUnsupportedEntry = errors.New("image: unsupported entry in layer")
	// ErrNotSupported is returned on systems that cannot unpack layers
	// (anything but Linux).
	ErrNotSupported = errors.New("image: unpacking layers is only supported on Linux")
	// ErrUnauthorized is returned when a registry refuses the credentials
	// (or their absence). Log in with `berth login REGISTRY`.
	ErrUnauthorized = errors.New("unauthorized: check the user name and password")
	// ErrUnknownManifest is returned when a registry has no such
	// repository, tag or digest.
	ErrUnknownManifest = errors.New("image: no such image in the registry")
	// ErrRegistryUnreachable is returned when no registry answers at the
	// reference's host: check the host and port, and whether it speaks
	// plain HTTP (mark it insecure) or TLS.
	ErrRegistryUnreachable = errors.New("image: registry unreachable")
	// ErrNoPlatform is returned when a multi-platform index has no image
	// for the requested (or this host's) platform.
	ErrNoPlatform = errors.New("image: no image for the platform")
)
