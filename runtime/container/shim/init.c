//go:build linux && cgo

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

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

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define MAX_LIST 4096

static char *toks;
static size_t ntoks, ntok_pos;
static char **tokv;

/* fail reports "CODE message" to the shim on fd 4 and exits. */
static void fail(int code, const char *fmt, ...) {
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dprintf(4, "%d %s", code, msg);
	_exit(code);
}

static const char *next(void) {
	if (ntok_pos >= ntoks)
		fail(127, "init plan is truncated");
	return tokv[ntok_pos++];
}

static char rootfs[4096];

/* The user namespace (see make_userns) and the host ID of the container's
   ID 0 in it. */
static int userns_fd = -1;
static unsigned long userns_host;

static int mkdir_p(const char *path, mode_t mode) {
	char buf[4096];
	size_t n = strlen(path);
	if (n >= sizeof(buf))
		return errno = ENAMETOOLONG, -1;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];
			buf[i] = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return -1;
			buf[i] = c;
		}
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode))
		return errno = ENOTDIR, -1;
	return 0;
}

/* secure_join resolves path inside root as the container will see it:
   symlinks are followed but never above root. out gets root + result. */
static void secure_join(const char *root, const char *path, char *out, size_t cap) {
	char resolved[4096] = "";   /* relative to root, no leading slash */
	char rest[8192];
	int links = 0;
	snprintf(rest, sizeof(rest), "%s", path);
	char *p = rest;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char part[256];
		if (len >= sizeof(part))
			fail(127, "path component too long in %s", path);
		memcpy(part, p, len);
		part[len] = '\0';
		p += len;
		if (strcmp(part, ".") == 0)
			continue;
		if (strcmp(part, "..") == 0) {
			char *s = strrchr(resolved, '/');
			if (s)
				*s = '\0';
			else
				resolved[0] = '\0';
			continue;
		}
		char next[4096], full[8192], target[4096];
		snprintf(next, sizeof(next), "%s%s%s", resolved, resolved[0] ? "/" : "", part);
		snprintf(full, sizeof(full), "%s/%s", root, next);
		struct stat st;
		if (lstat(full, &st) < 0 || !S_ISLNK(st.st_mode)) {
			snprintf(resolved, sizeof(resolved), "%s", next);
			continue;
		}
		if (++links > 40)
			fail(127, "too many symlinks under %s", path);
		ssize_t n = readlink(full, target, sizeof(target) - 1);
		if (n < 0)
			fail(127, "readlink %s: %s", next, strerror(errno));
		target[n] = '\0';
		if (target[0] == '/')
			resolved[0] = '\0';
		char tmp[8192];
		snprintf(tmp, sizeof(tmp), "%s/%s", target, p);
		snprintf(rest, sizeof(rest), "%s", tmp);
		p = rest;
	}
	snprintf(out, cap, "%s%s%s", root, resolved[0] ? "/" : "", resolved);
}

static void do_mount(void) {
	const char *src = next(), *dst = next(), *type = next();
	unsigned long flags = strtoul(next(), NULL, 10);
	const char *data = next(), *kind = next(), *ro = next();
	char p[8192];
	secure_join(rootfs, dst, p, sizeof(p));
	if (kind[0] == 'f') {
		char dir[8192];
		snprintf(dir, sizeof(dir), "%s", p);
		char *s = strrchr(dir, '/');
		if (s && s != dir)
			*s = '\0';
		if (mkdir_p(dir, 0755) < 0)
			fail(127, "bind mount: create %s: %s", dst, strerror(errno));
		int fd = open(p, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0)
			fail(127, "bind mount: create %s: %s", dst, strerror(errno));
		close(fd);
	} else if (mkdir_p(p, 0755) < 0)
		fail(127, "mount %s: %s", dst, strerror(errno));
	if (mount(src, p, type[0] ? type : NULL, flags, data[0] ? data : NULL) < 0)
		fail(127, "mount %s on %s: %s", type[0] ? type : src, dst, strerror(errno));
	if (ro[0] == '1' && mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
		fail(127, "remount %s read-only: %s", dst, strerror(errno));
}

static void do_mknod(void) {
	const char *dst = next(), *type = next();
	unsigned maj = (unsigned)strtoul(next(), NULL, 10), min = (unsigned)strtoul(next(), NULL, 10);
	mode_t mode = (mode_t)strtoul(next(), NULL, 10);
	uid_t uid = (uid_t)strtoul(next(), NULL, 10);
	gid_t gid = (gid_t)strtoul(next(), NULL, 10);
	char p[8192], dir[8192];
	secure_join(rootfs, dst, p, sizeof(p));
	snprintf(dir, sizeof(dir), "%s", p);
	char *s = strrchr(dir, '/');
	if (s && s != dir)
		*s = '\0';
	if (mkdir_p(dir, 0755) < 0)
		fail(127, "device %s: %s", dst, strerror(errno));
	if (mknod(p, (type[0] == 'b' ? S_IFBLK : S_IFCHR) | mode, makedev(maj, min)) < 0)
		fail(127, "mknod %s: %s", dst, strerror(errno));
	if (lchown(p, uid, gid) < 0)
		fail(127, "chown %s: %s", dst, strerror(errno));
}

static void do_symlink(void) {
	const char *target = next(), *dst = next();
	char p[8192];
	snprintf(p, sizeof(p), "%s%s", rootfs, dst);
	if (symlink(target, p) < 0)
		fail(127, "symlink %s: %s", dst, strerror(errno));
}

static void do_pivot(void) {
	if (chdir(rootfs) < 0)
		fail(127, "chdir rootfs: %s", strerror(errno));
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail(127, "pivot_root: %s", strerror(errno));
	if (umount2(".", MNT_DETACH) < 0)
		fail(127, "detach the old root: %s", strerror(errno));
	if (chdir("/") < 0)
		fail(127, "chdir /: %s", strerror(errno));
}

/* The container's terminal: init opens it in the container's own
   /dev/pts (so `tty` names it there), sends the master to the shim on fd
   6 and keeps the slave for the command's stdio and controlling terminal. */
static int want_tty, tty_fd = -1;

static void open_tty(void) {
	int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		fail(127, "open the terminal /dev/pts/ptmx: %s", strerror(errno));
	int unlock = 0;
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		fail(127, "unlock the terminal: %s", strerror(errno));
	tty_fd = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (tty_fd < 0)
		fail(127, "open the terminal's slave: %s", strerror(errno));
	char b = 't';
	struct iovec iov = {.iov_base = &b, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	if (sendmsg(6, &m, MSG_NOSIGNAL) != 1)
		fail(127, "send the terminal to the shim: %s", strerror(errno));
	close(master);
	close(6);
}

/* do_mask hides p: a read-only tmpfs over a directory, the null device
   over a file. Both ends go through O_PATH descriptors and are mounted by
   their /proc/self/fd names, so a symlink swapped in for /dev/null (or
   for p) can never redirect the mount (the CVE-2025-31133 class): the
   source must really be the character device 1:3. */
static void do_mask(const char *p) {
	int target = open(p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (target < 0) {
		if (errno == ENOENT)
			return;
		fail(127, "mask %s: %s", p, strerror(errno));
	}
	struct stat st;
	if (fstat(target, &st) < 0)
		fail(127, "mask %s: %s", p, strerror(errno));
	if (S_ISLNK(st.st_mode))
		fail(127, "mask %s: it is a symlink", p);
	char tpath[64], npath[64];
	snprintf(tpath, sizeof(tpath), "/proc/self/fd/%d", target);
	int r;
	if (S_ISDIR(st.st_mode)) {
		r = mount("tmpfs", tpath, "tmpfs", MS_RDONLY, NULL);
	} else {
		int null = open("/dev/null", O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (null < 0)
			fail(127, "mask %s: open /dev/null: %s", p, strerror(errno));
		struct stat ns;
		if (fstat(null, &ns) < 0)
			fail(127, "mask %s: stat /dev/null: %s", p, strerror(errno));
		if (!S_ISCHR(ns.st_mode) || major(ns.st_rdev) != 1 || minor(ns.st_rdev) != 3)
			fail(127, "mask %s: /dev/null is not the null device (mode %o, device %u:%u)", p, ns.st_mode, major(ns.st_rdev), minor(ns.st_rdev));
		snprintf(npath, sizeof(npath), "/proc/self/fd/%d", null);
		r = mount(npath, tpath, NULL, MS_BIND, NULL);
		close(null);
	}
	if (r < 0)
		fail(127, "mask %s: %s", p, strerror(errno));
	close(target);
}

static void do_ro(const char *p) {
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
		if (errno == ENOENT)
			return;
		fail(127, "bind %s: %s", p, strerror(errno));
	}
	if (mount(p, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		fail(127, "remount %s read-only: %s", p, strerror(errno));
}

static void do_lo(void) {
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail(127, "bring lo up: %s", strerror(errno));
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		fail(127, "bring lo up: %s", strerror(errno));
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		fail(127, "bring lo up: %s", strerror(errno));
	close(fd);
}

static void do_rlimit(void) {
	int res = atoi(next());
	unsigned long long soft = strtoull(next(), NULL, 10), hard = strtoull(next(), NULL, 10);
	struct rlimit cur;
	if (getrlimit(res, &cur) < 0)
		fail(127, "getrlimit %d: %s", res, strerror(errno));
	if (hard > cur.rlim_max)
		hard = cur.rlim_max;
	if (soft > hard)
		soft = hard;
	struct rlimit rl = {.rlim_cur = soft, .rlim_max = hard};
	if (setrlimit(res, &rl) < 0)
		fail(127, "setrlimit %d: %s", res, strerror(errno));
}

/* A resolved user, as ResolveUser in Go computes it. */
static uid_t u_uid;
static gid_t u_gid;
static gid_t u_groups[256];
static int u_ngroups;
static char u_home[1024] = "/";

static int parse_id(const char *s, unsigned long *out) {
	if (!*s)
		return 0;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || errno || v > 0xffffffffUL || s[0] == '-' || s[0] == '+' || s[0] == ' ')
		return 0;
	*out = v;
	return 1;
}

/* fields splits a passwd/group line in place into at most n fields. */
static int fields(char *line, char **f, int n) {
	int k = 0;
	f[k++] = line;
	for (char *p = line; *p && k < n; p++) {
		if (*p == ':') {
			*p = '\0';
			f[k++] = p + 1;
		}
	}
	for (int i = k; i < n; i++)
		f[i] = "";
	return k;
}

static char *trim(char *s) {
	while (*s == ' ' || *s == '\t' || *s == '\r')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

static void resolve_user(const char *spec) {
	char user[1024], group[1024] = "";
	int has_group = 0;
	snprintf(user, sizeof(user), "%s", spec);
	char *colon = strchr(user, ':');
	if (colon) {
		*colon = '\0';
		has_group = 1;
		snprintf(group, sizeof(group), "%s", colon + 1);
		if (!group[0])
			fail(127, "container: unable to find user or group: empty group in \"%s\"", spec);
	}
	if (!user[0])
		strcpy(user, "0");
	unsigned long num;
	int numeric = parse_id(user, &num);
	char name[1024] = "";
	int found = 0;
	char line[4096];
	FILE *f = fopen("/etc/passwd", "re");
	while (f && fgets(line, sizeof(line), f)) {
		char *l = trim(line), *fl[7];
		if (!*l || *l == '#')
			continue;
		fields(l, fl, 7);
		if ((numeric && strcmp(fl[2], user) == 0) || (!numeric && strcmp(fl[0], user) == 0)) {
			unsigned long uid, gid;
			if (!parse_id(fl[2], &uid) || !parse_id(fl[3], &gid))
				continue;
			u_uid = (uid_t)uid;
			u_gid = (gid_t)gid;
			snprintf(u_home, sizeof(u_home), "%s", fl[5][0] ? fl[5] : "/");
			snprintf(name, sizeof(name), "%s", fl[0]);
			found = 1;
			break;
		}
	}
	if (f)
		fclose(f);
	if (!found) {
		if (!numeric)
			fail(127, "container: unable to find user or group: unable to find user %s: no matching entries in passwd file", user);
		u_uid = (uid_t)num;
		u_gid = 0;
	}
	FILE *g = NULL;
	if (has_group) {
		unsigned long gid;
		if (parse_id(group, &gid))
			u_gid = (gid_t)gid;
		else {
			int ok = 0;
			g = fopen("/etc/group", "re");
			while (g && fgets(line, sizeof(line), g)) {
				char *l = trim(line), *fl[4];
				if (!*l || *l == '#')
					continue;
				fields(l, fl, 4);
				if (strcmp(fl[0], group) == 0 && parse_id(fl[2], &gid)) {
					u_gid = (gid_t)gid;
					ok = 1;
					break;
				}
			}
			if (g)
				fclose(g);
			if (!ok)
				fail(127, "container: unable to find user or group: unable to find group %s: no matching entries in group file", group);
		}
	}
	u_groups[0] = u_gid;
	u_ngroups = 1;
	if (!name[0])
		return;
	g = fopen("/etc/group", "re");
	while (g && fgets(line, sizeof(line), g) && u_ngroups < 256) {
		char *l = trim(line), *fl[4];
		if (!*l || *l == '#')
			continue;
		fields(l, fl, 4);
		unsigned long gid;
		if (!parse_id(fl[2], &gid))
			continue;
		for (char *m = strtok(fl[3], ","); m; m = strtok(NULL, ",")) {
			if (strcmp(m, name) == 0) {
				int dup = 0;
				for (int i = 0; i < u_ngroups; i++)
					dup |= u_groups[i] == (gid_t)gid;
				if (!dup)
					u_groups[u_ngroups++] = (gid_t)gid;
				break;
			}
		}
	}
	if (g)
		fclose(g);
}

static const char *env_get(char **env, int n, const char *key) {
	size_t k = strlen(key);
	for (int i = n - 1; i >= 0; i--)
		if (strncmp(env[i], key, k) == 0 && env[i][k] == '=')
			return env[i] + k + 1;
	return NULL;
}

/* env_add sets KEY=VALUE, replacing an earlier KEY in place like Go's buildEnv. */
static int env_add(char **env, int n, char *kv) {
	char *eq = strchr(kv, '=');
	size_t k = eq ? (size_t)(eq - kv) : strlen(kv);
	for (int i = 0; i < n; i++) {
		if (strncmp(env[i], kv, k) == 0 && (env[i][k] == '=' || env[i][k] == '\0')) {
			env[i] = kv;
			return n;
		}
	}
	if (n < MAX_LIST - 4)
		env[n++] = kv;
	return n;
}

static void look_path(const char *file, const char *path, char *out, size_t cap) {
	struct stat st;
	if (strchr(file, '/')) {
		if (stat(file, &st) < 0)
			fail(127, "exec \"%s\": no such file or directory", file);
		if (S_ISDIR(st.st_mode) || !(st.st_mode & 0111))
			fail(126, "exec \"%s\": permission denied", file);
		snprintf(out, cap, "%s", file);
		return;
	}
	int denied = 0;
	const char *p = path ? path : "";
	for (;;) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char cand[4096];
		if (len == 0)
			snprintf(cand, sizeof(cand), "./%s", file);
		else
			snprintf(cand, sizeof(cand), "%.*s/%s", (int)len, p, file);
		if (stat(cand, &st) == 0 && !S_ISDIR(st.st_mode)) {
			if (st.st_mode & 0111) {
				snprintf(out, cap, "%s", cand);
				return;
			}
			denied = 1;
		}
		if (!end)
			break;
		p = end + 1;
	}
	if (denied)
		fail(126, "exec \"%s\": permission denied", file);
	fail(127, "exec \"%s\": executable file not found in $PATH", file);
}

static void set_creds(unsigned long long caps) {
	for (int c = 0; c < 64; c++) {
		if (caps & (1ULL << c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break;
			fail(127, "drop capability %d from the bounding set: %s", c, strerror(errno));
		}
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail(127, "keep capabilities: %s", strerror(errno));
	if (syscall(SYS_setgroups, u_ngroups, u_groups) < 0)
		fail(127, "setgroups: %s", strerror(errno));
	if (syscall(SYS_setresgid, u_gid, u_gid, u_gid) < 0)
		fail(127, "setgid %u: %s", u_gid, strerror(errno));
	if (syscall(SYS_setresuid, u_uid, u_uid, u_uid) < 0)
		fail(127, "setuid %u: %s", u_uid, strerror(errno));
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)caps;
	data[1].effective = data[1].permitted = (uint32_t)(caps >> 32);
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail(127, "capset: %s", strerror(errno));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		fail(127, "clear ambient capabilities: %s", strerror(errno));
}

/* use_tty makes the terminal the command's stdio and its session's
   controlling terminal, owned by the user it runs as. */
static void use_tty(void) {
	/* Still host root here: name the user by its host ID. */
	if (fchown(tty_fd, (uid_t)(u_uid + userns_host), (gid_t)-1) < 0)
		fail(127, "chown the terminal: %s", strerror(errno));
	if (setsid() < 0)
		fail(127, "setsid: %s", strerror(errno));
	if (ioctl(tty_fd, TIOCSCTTY, 0) < 0)
		fail(127, "set the controlling terminal: %s", strerror(errno));
	if (dup2(tty_fd, 0) < 0 || dup2(tty_fd, 1) < 0 || dup2(tty_fd, 2) < 0)
		fail(127, "terminal stdio: %s", strerror(errno));
	if (tty_fd > 2)
		close(tty_fd);
}

/* The seccomp filter, from the plan's "seccomp HEX" (struct sock_filter
   array in the host's byte order, compiled by package runtime/seccomp). */
static struct sock_filter *filter;
static unsigned short filter_len;

static int hexval(char c) {
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void read_filter(const char *hex) {
	size_t n = strlen(hex);
	if (n == 0 || n % 16 != 0 || n / 16 > 4096)
		fail(127, "seccomp filter of %zu hex digits", n);
	unsigned char *b = malloc(n / 2);
	if (!b)
		fail(127, "out of memory");
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			fail(127, "seccomp filter: bad hex");
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	filter = (struct sock_filter *)b;
	filter_len = (unsigned short)(n / 16);
}

static void install_filter(void) {
	struct sock_fprog prog = {.len = filter_len, .filter = filter};
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
		fail(127, "install the seccomp filter: %s", strerror(errno));
}

/* User namespaces. "userns HOSTID SIZE" makes a user namespace mapping
   container IDs 0..SIZE-1 to host IDs HOSTID.. (a helper child unshares
   it and this process, still root on the host, writes its maps), kept by
   userns_fd. "idmap SRC DST" mounts the layer SRC at DST through that
   mapping, so the overlay shows the image's root-owned files as the
   container root's. Init does every mount as host root and joins the
   namespace last, just before it drops to the user: the container's root
   is then an unprivileged host user with no power over host-owned files. */

static void write_file(const char *path, const char *data) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail(127, "user namespace: open %s: %s", path, strerror(errno));
	if (write(fd, data, strlen(data)) != (ssize_t)strlen(data))
		fail(127, "user namespace: write %s: %s", path, strerror(errno));
	close(fd);
}

static void make_userns(void) {
	unsigned long host = strtoul(next(), NULL, 10), size = strtoul(next(), NULL, 10);
	userns_host = host;
	int ready[2], done[2];
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0)
		fail(127, "user namespace: pipe: %s", strerror(errno));
	pid_t c = fork();
	if (c < 0)
		fail(127, "user namespace: fork: %s", strerror(errno));
	if (c == 0) {
		close(ready[0]);
		close(done[1]);
		/* /proc is still the host's here: tell the parent our pid there. */
		char self[32] = "";
		if (unshare(CLONE_NEWUSER) < 0 || readlink("/proc/self", self, sizeof(self) - 1) < 0)
			_exit(1);
		if (write(ready[1], self, strlen(self)) < 0)
			_exit(1);
		char b;
		while (read(done[0], &b, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(ready[1]);
	close(done[0]);
	char pid[32] = "";
	ssize_t n = read(ready[0], pid, sizeof(pid) - 1);
	if (n <= 0)
		fail(127, "user namespace: the helper failed to unshare");
	pid[n] = '\0';
	char path[64], map[64];
	snprintf(map, sizeof(map), "0 %lu %lu\n", host, size);
	snprintf(path, sizeof(path), "/proc/%s/uid_map", pid);
	write_file(path, map);
	snprintf(path, sizeof(path), "/proc/%s/gid_map", pid);
	write_file(path, map);
	snprintf(path, sizeof(path), "/proc/%s/ns/user", pid);
	userns_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (userns_fd < 0)
		fail(127, "user namespace: open %s: %s", path, strerror(errno));
	close(done[1]);
	close(ready[0]);
	while (waitpid(c, NULL, 0) < 0 && errno == EINTR)
		;
}

static void do_idmap(void) {
	const char *src = next(), *dst = next();
	if (userns_fd < 0)
		fail(127, "idmap %s: no user namespace", src);
	int fd = (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (fd < 0)
		fail(127, "idmap %s: open_tree: %s", src, strerror(errno));
	struct mount_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.attr_set = MOUNT_ATTR_IDMAP;
	attr.userns_fd = (uint64_t)userns_fd;
	if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
		fail(127, "idmap %s: mount_setattr (the filesystem must support idmapped mounts): %s", src, strerror(errno));
	if (syscall(SYS_move_mount, fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		fail(127, "idmap %s: move_mount to %s: %s", src, dst, strerror(errno));
	close(fd);
}

static void run_plan(void) {
	int nnp = 0;
	unsigned long long caps = 0;
	const char *user = "", *cwd = "/", *hostname = "";
	static char *env[MAX_LIST], *args[MAX_LIST];
	int nenv = 0, nargs = 0;
	umask(0);
	while (ntok_pos < ntoks) {
		const char *op = next();
		if (!strcmp(op, "netns")) {
			const char *p = next();
			int netns = open(p, O_RDONLY | O_CLOEXEC);
			if (netns < 0)
				fail(127, "open network namespace %s: %s", p, strerror(errno));
			/* Single-threaded: this moves the whole process, so /sys
			   will show this namespace's devices. */
			if (setns(netns, CLONE_NEWNET) < 0)
				fail(127, "join network namespace %s: %s", p, strerror(errno));
			close(netns);
		} else if (!strcmp(op, "private")) {
			if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
				fail(127, "make / private: %s", strerror(errno));
		} else if (!strcmp(op, "rootfs")) {
			snprintf(rootfs, sizeof(rootfs), "%s", next());
		} else if (!strcmp(op, "userns")) {
			make_userns();
		} else if (!strcmp(op, "idmap")) {
			do_idmap();
		} else if (!strcmp(op, "unprivports")) {
			/* In a user namespace the network namespace still belongs
			   to the host's, so binding ports below 1024 would need a
			   host capability; docker opens them all instead. */
			write_file("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
		} else if (!strcmp(op, "overlay")) {
			const char *data = next();
			if (mount("overlay", rootfs, "overlay", 0, data) < 0)
				fail(127, "mount overlay rootfs: %s", strerror(errno));
		} else if (!strcmp(op, "overlayat")) {
			/* the same with paths relative to a directory, for more
			   layers than absolute paths fit in a page of options */
			const char *at = next();
			const char *data = next();
			int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (cwd < 0 || chdir(at) < 0)
				fail(127, "mount overlay rootfs: enter %s: %s", at, strerror(errno));
			if (mount("overlay", rootfs, "overlay", 0, data) < 0)
				fail(127, "mount overlay rootfs: %s", strerror(errno));
			if (fchdir(cwd) < 0)
				fail(127, "mount overlay rootfs: leave %s: %s", at, strerror(errno));
			close(cwd);
		} else if (!strcmp(op, "mount")) {
			do_mount();
		} else if (!strcmp(op, "mknod")) {
			do_mknod();
		} else if (!strcmp(op, "symlink")) {
			do_symlink();
		} else if (!strcmp(op, "pivot")) {
			do_pivot();
			if (want_tty)
				open_tty();
		} else if (!strcmp(op, "tty")) {
			want_tty = 1;
		} else if (!strcmp(op, "stdin")) {
			/* the shim's: stdin is a pipe it feeds */
		} else if (!strcmp(op, "mask")) {
			do_mask(next());
		} else if (!strcmp(op, "ro")) {
			do_ro(next());
		} else if (!strcmp(op, "rootro")) {
			if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
				fail(127, "remount / read-only: %s", strerror(errno));
		} else if (!strcmp(op, "hostname")) {
			hostname = next();
			if (sethostname(hostname, strlen(hostname)) < 0)
				fail(127, "sethostname: %s", strerror(errno));
		} else if (!strcmp(op, "lo")) {
			do_lo();
		} else if (!strcmp(op, "rlimit")) {
			do_rlimit();
		} else if (!strcmp(op, "user")) {
			user = next();
		} else if (!strcmp(op, "caps")) {
			caps = strtoull(next(), NULL, 10);
		} else if (!strcmp(op, "nnp")) {
			nnp = 1;
		} else if (!strcmp(op, "seccomp")) {
			read_filter(next());
		} else if (!strcmp(op, "cwd")) {
			cwd = next();
		} else if (!strcmp(op, "env")) {
			nenv = env_add(env, nenv, (char *)next());
		} else if (!strcmp(op, "arg")) {
			if (nargs < MAX_LIST - 1)
				args[nargs++] = (char *)next();
		} else if (!strcmp(op, "exec")) {
			break;
		} else
			fail(127, "unknown init plan operation %s", op);
	}
	if (nargs == 0)
		fail(127, "no command");
	resolve_user(user);
	static char pathenv[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	static char hostenv[128], homeenv[1100];
	if (!env_get(env, nenv, "PATH"))
		env[nenv++] = pathenv;
	if (!env_get(env, nenv, "HOSTNAME") && hostname[0]) {
		snprintf(hostenv, sizeof(hostenv), "HOSTNAME=%s", hostname);
		env[nenv++] = hostenv;
	}
	if (!env_get(env, nenv, "HOME")) {
		snprintf(homeenv, sizeof(homeenv), "HOME=%s", u_home);
		env[nenv++] = homeenv;
	}
	env[nenv] = NULL;
	args[nargs] = NULL;
	char path[4096];
	look_path(args[0], env_get(env, nenv, "PATH"), path, sizeof(path));
	if (mkdir_p(cwd, 0755) < 0)
		fail(127, "create working directory %s: %s", cwd, strerror(errno));
	/* Wait until the manager has put us in the container's cgroup. */
	char c;
	ssize_t r;
	do {
		r = read(5, &c, 1);
	} while (r < 0 && errno == EINTR);
	if (r != 1)
		fail(127, "start aborted before the cgroup was set");
	close(5);
	if (tty_fd >= 0)
		use_tty();
	umask(022);
	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		fail(127, "close inherited descriptors: %s", strerror(errno));
	/* Ignored signals and the signal mask survive exec: start the
	   command with neither, whatever berth inherited. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			reset_signal(sig);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Nothing of the host may reach the command, not even for the
	   chdir below (CVE-2024-21626: a working directory of
	   /proc/self/fd/N naming a descriptor still open here): close for
	   good every descriptor but stdio and the status pipe (4, which
	   closes on exec). */
	if (userns_fd >= 0) {
		if (setns(userns_fd, CLONE_NEWUSER) < 0)
			fail(127, "join the user namespace: %s", strerror(errno));
		close(userns_fd);
	}
	if (syscall(SYS_close_range, 5U, ~0U, 0U) < 0)
		fail(127, "close inherited descriptors: %s", strerror(errno));
	/* Without no_new_privs only CAP_SYS_ADMIN may load a filter, so
	   unless the command keeps it the filter goes in before the
	   capabilities are dropped (as runc does); the profile must then
	   allow the few calls left (setgroups, setresuid, capset, prctl,
	   chdir, getcwd, execve). */
	int late = nnp || (caps & (1ULL << CAP_SYS_ADMIN));
	if (filter && !late)
		install_filter();
	set_creds(caps);
	if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail(127, "set no_new_privs: %s", strerror(errno));
	if (chdir(cwd) < 0)
		fail(127, "chdir to %s: %s", cwd, strerror(errno));
	char wd[4096];
	if (getcwd(wd, sizeof(wd)) == NULL || wd[0] != '/')
		fail(127, "working directory %s is outside the container's root", cwd);
	if (filter && late)
		install_filter();
	execve(path, args, env);
	if (errno == EACCES || errno == EPERM)
		fail(126, "exec \"%s\": permission denied", args[0]);
	if (errno == ENOENT)
		fail(127, "exec \"%s\": no such file or directory", args[0]);
	fail(126, "exec \"%s\": %s", args[0], strerror(errno));
}

void berth_init(int argc, char **argv) {
	if (argc < 1 || argv == NULL || argv[0] == NULL)
		return;
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strcmp(base, "berth-init") != 0)
		return;
	fcntl(3, F_SETFD, FD_CLOEXEC);
	fcntl(4, F_SETFD, FD_CLOEXEC);
	fcntl(5, F_SETFD, FD_CLOEXEC);
	fcntl(6, F_SETFD, FD_CLOEXEC);
	/* Anything above the descriptors the shim hands over is a leak. */
	syscall(SYS_close_range, 7U, ~0U, 0U);
	size_t cap = 1 << 16, n = 0;
	toks = malloc(cap);
	for (;;) {
		if (n == cap && !(toks = realloc(toks, cap *= 2)))
			fail(127, "out of memory");
		if (!toks)
			fail(127, "out of memory");
		ssize_t r = read(3, toks + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail(127, "read the init plan: %s", strerror(errno));
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(3);
	if (n == 0)
		fail(127, "no init plan from the shim");
	for (size_t i = 0; i < n; i++)
		ntoks += toks[i] == '\0';
	tokv = malloc((ntoks + 1) * sizeof(char *));
	if (!tokv)
		fail(127, "out of memory");
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || toks[i - 1] == '\0') {
			if (k < ntoks)
				tokv[k++] = toks + i;
		}
	}
	ntoks = k;
	run_plan();
}
