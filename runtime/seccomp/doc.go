// Package seccomp turns a seccomp profile in Docker's JSON format into a
// classic BPF program the kernel runs on every system call, with no
// libseccomp (the berth binary stays static).
//
// Default returns Docker's default profile (default.json, from
// github.com/moby/profiles, Apache-2.0). Parse reads a user's profile and
// checks it. Compile resolves a profile for one container (its
// capabilities, the host's architecture and kernel: the "includes" and
// "excludes" of Docker's format) and assembles the program:
//
//	load arch ─┬─ native arch ──┐        unknown arch → kill the process
//	           └─ compat arch ──┤        (i386 on amd64, arm on arm64)
//	                            ▼
//	         load nr; nr above the arch's table → ERRNO(ENOSYS), so that
//	         a C library falls back from a syscall newer than the profile
//	                            ▼
//	         binary search (jge) over ranges of consecutive numbers with
//	         the same action, then a short linear scan of a few ranges;
//	         a syscall with argument rules tests them in profile order;
//	         no match → the profile's default action (Docker's:
//	         ERRNO(EPERM))
//
// Docker's ~370 allowed names fall into a few dozen ranges per arch, so
// the program is about 550 instructions for amd64 with i386, and a lookup
// costs about a dozen. Program.Evaluate runs a program in a small BPF
// interpreter, which the tests use to check the compiled program against
// the profile's rules. Install (Linux) loads a program into the calling
// thread; the container's init (package runtime/container) does it in C
// from the program's bytes.
package seccomp
