package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-dev/berth/runtime/image"
)

// resolveImage finds a task's image in the local store. A missing image is
// pulled from its registry when the engine can pull (pullImage).
func (e *Engine) resolveImage(ctx context.Context, ref string) (*image.Image, error) {
	img, err := e.Images.Get(ref)
	if err == nil {
		return img, nil
	}
	if !isNotFound(err) {
		return nil, err
	}
	img, perr := e.pullImage(ctx, ref)
	if perr != nil {
		return nil, perr
	}
	if img == nil {
		return nil, fmt.Errorf("%w: %s: import it with 'berth image import' or load it with 'berth image load'", ErrImageNotFound, ref)
	}
	return img, nil
}

// pullImage fetches ref from its registry into the store. It returns nil,
// nil when this build cannot pull, so the caller reports the image as
// missing.
func (e *Engine) pullImage(ctx context.Context, ref string) (*image.Image, error) {
	return nil, nil
}

func isNotFound(err error) bool { return errors.Is(err, image.ErrNotFound) }
