//go:build linux && cgo

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/syscall.h>

/* reset_signal puts sig back to its default disposition. It calls the
   kernel directly because the C library refuses the signals it reserves
   for itself (32 and 33), and those too can arrive ignored (GNU make
   starts its recipes that way) and would stay ignored across exec. */
static void reset_signal(int sig)
{
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		unsigned long mask;
	} ksa = { SIG_DFL, 0, NULL, 0 };
	syscall(SYS_rt_sigaction, sig, &ksa, NULL, sizeof(ksa.mask));
}

static volatile pid_t berth_child;

static void berth_forward(int sig) {
	if (berth_child > 0)
		kill(berth_child, sig);
}

static void berth_fail(const char *what, const char *arg) {
	dprintf(5, "127 nsenter: %s %s: %s", what, arg, strerror(errno));
	_exit(127);
}

void berth_nsenter(int argc, char **argv) {
	if (argc < 1 || argv == NULL || argv[0] == NULL || strcmp(argv[0], "berth-exec") != 0)
		return;
	const char *pid = getenv("_BERTH_NSENTER_PID");
	if (pid == NULL || *pid == '\0')
		return;
	char c;
	ssize_t n;
	do {
		n = read(3, &c, 1);
	} while (n < 0 && errno == EINTR);
	if (n != 1) {
		errno = EPIPE;
		berth_fail("wait for the manager", "");
	}
	static const char *names[] = {"ipc", "uts", "net", "pid", "mnt"};
	int fds[5];
	char path[64];
	for (int i = 0; i < 5; i++) {
		snprintf(path, sizeof(path), "/proc/%s/ns/%s", pid, names[i]);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			berth_fail("open", path);
	}
	/* A container in a user namespace: join it last, once the others
	   (owned by the host's) are joined with the host's privileges. */
	snprintf(path, sizeof(path), "/proc/%s/ns/user", pid);
	int userfd = open(path, O_RDONLY | O_CLOEXEC);
	if (userfd < 0)
		berth_fail("open", path);
	struct stat theirs, ours;
	if (fstat(userfd, &theirs) < 0 || stat("/proc/self/ns/user", &ours) < 0)
		berth_fail("stat", path);
	for (int i = 0; i < 5; i++) {
		if (setns(fds[i], 0) < 0)
			berth_fail("setns", names[i]);
		close(fds[i]);
	}
	if (theirs.st_ino != ours.st_ino || theirs.st_dev != ours.st_dev) {
		if (setns(userfd, CLONE_NEWUSER) < 0)
			berth_fail("setns", "user");
	}
	close(userfd);
	unsetenv("_BERTH_NSENTER_PID");
	pid_t child = fork();
	if (child < 0)
		berth_fail("fork", "");
	if (child == 0) {
		close(4);
		/* An ignored signal would stay ignored through the Go runtime
		   and the exec of the command; start from the defaults. */
		for (int sig = 1; sig < NSIG; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				reset_signal(sig);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* A terminal as stdin (exec -t) becomes the controlling terminal
		   of a new session, so ^C and job control work. */
		if (isatty(0) && (setsid() < 0 || ioctl(0, TIOCSCTTY, 0) < 0))
			berth_fail("controlling terminal", "");
		return; /* into the Go runtime, inside the container */
	}
	berth_child = child;
	dprintf(4, "%d\n", (int)child);
	close(4);
	close(3);
	close(5);
	static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = berth_forward;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	int status;
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR)
			_exit(255);
	}
	if (WIFSIGNALED(status))
		_exit(128 + WTERMSIG(status));
	_exit(WEXITSTATUS(status));
}
