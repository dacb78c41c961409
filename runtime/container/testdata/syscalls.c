/* syscalls tries the system calls named on its command line and prints
   "NAME ok" or "NAME errno=N" for each: a static helper that the seccomp
   tests bind into busybox containers. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		long r = -1;
		const char *n = argv[i];
		if (!strcmp(n, "keyctl"))
			r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
		else if (!strcmp(n, "unshare-user"))
			r = unshare(CLONE_NEWUSER);
		else if (!strcmp(n, "unshare-mount"))
			r = unshare(CLONE_NEWNS);
		else if (!strcmp(n, "mount"))
			r = mount("none", "/tmp", "tmpfs", 0, NULL);
		else if (!strcmp(n, "getpid"))
			r = syscall(SYS_getpid);
		else if (!strcmp(n, "personality-4"))
			r = syscall(SYS_personality, 4);
		else if (!strcmp(n, "clone3"))
			r = syscall(SYS_clone3, NULL, 0);
		else {
			printf("%s unknown\n", n);
			continue;
		}
		if (r < 0)
			printf("%s errno=%d\n", n, errno);
		else
			printf("%s ok\n", n);
	}
	return 0;
}
