//go:build !linux

package image

import (
	"context"
	"io"
)

func extract(ctx context.Context, r io.Reader, root string) (int64, error) {
	return 0, ErrNotSupported
}
