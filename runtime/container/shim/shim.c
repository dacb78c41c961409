//go:build linux && cgo

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE (16 << 10)

static const char *dir;
static char logpath[4096];
static int logfd = -1;
static long long logsize, maxsize;
static int maxfiles;

/* The entry being encoded: escaping at most triples a byte (\u00XX is 6). */
static char entry[MAX_LINE * 6 + 256];

struct stream {
	const char *name;
	int type; /* attach frame type of its output */
	int fd;
	char buf[MAX_LINE];
	size_t len;
};

/* shim_error appends a line to DIR/shim.log, made only when needed. */
static void shim_error(const char *fmt, va_list ap) {
	char path[4200];
	snprintf(path, sizeof(path), "%s/shim.log", dir ? dir : ".");
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		fd = 2;
	dprintf(fd, "berth-shim: ");
	vdprintf(fd, fmt, ap);
	dprintf(fd, "\n");
	if (fd != 2)
		close(fd);
}

static void warn(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	shim_error(fmt, ap);
	va_end(ap);
}

static void die(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	shim_error(fmt, ap);
	va_end(ap);
	_exit(1);
}

static void write_all(int fd, const char *p, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

static size_t rfc3339nano(char *out, size_t cap) {
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	if (ts.tv_nsec != 0) {
		char frac[16];
		snprintf(frac, sizeof(frac), ".%09ld", ts.tv_nsec);
		size_t l = strlen(frac);
		while (frac[l - 1] == '0')
			l--;
		memcpy(out + n, frac, l);
		n += l;
	}
	out[n++] = 'Z';
	out[n] = '\0';
	return n;
}

/* utf8len returns the length of the valid UTF-8 sequence at p, or 0. */
static size_t utf8len(const unsigned char *p, size_t n) {
	unsigned c = p[0];
	size_t need;
	unsigned cp;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		cp = c & 0x07;
	} else
		return 0;
	if (n < need)
		return 0;
	for (size_t i = 1; i < need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return need;
}

static size_t append_string(char *b, const char *s, size_t n) {
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	b[o++] = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			if (c == '"' || c == '\\') {
				b[o++] = '\\';
				b[o++] = (char)c;
			} else if (c == '\n') {
				b[o++] = '\\';
				b[o++] = 'n';
			} else if (c == '\r') {
				b[o++] = '\\';
				b[o++] = 'r';
			} else if (c == '\t') {
				b[o++] = '\\';
				b[o++] = 't';
			} else if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f) {
				memcpy(b + o, "\\u00", 4);
				o += 4;
				b[o++] = hex[c >> 4];
				b[o++] = hex[c & 0xf];
			} else
				b[o++] = (char)c;
			i++;
			continue;
		}
		size_t l = utf8len((const unsigned char *)s + i, n - i);
		if (l == 0) {
			memcpy(b + o, "\\ufffd", 6);
			o += 6;
			i++;
		} else if (l == 3 && c == 0xe2 && (unsigned char)s[i + 1] == 0x80 && ((unsigned char)s[i + 2] == 0xa8 || (unsigned char)s[i + 2] == 0xa9)) {
			memcpy(b + o, (unsigned char)s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
			o += 6;
			i += 3;
		} else {
			memcpy(b + o, s + i, l);
			o += l;
			i += l;
		}
	}
	b[o++] = '"';
	return o;
}

static void open_log(void) {
	logfd = open(logpath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (logfd < 0)
		die("open %s: %s", logpath, strerror(errno));
	struct stat st;
	logsize = fstat(logfd, &st) == 0 ? st.st_size : 0;
}

static void rotate(void) {
	close(logfd);
	if (maxfiles <= 1) {
		if (truncate(logpath, 0) < 0)
			warn("truncate %s: %s", logpath, strerror(errno));
	} else {
		char from[4200], to[4200];
		for (int i = maxfiles - 1; i >= 1; i--) {
			if (i > 1)
				snprintf(from, sizeof(from), "%s.%d", logpath, i - 1);
			else
				snprintf(from, sizeof(from), "%s", logpath);
			snprintf(to, sizeof(to), "%s.%d", logpath, i);
			rename(from, to);
		}
	}
	open_log();
}

static void log_entry(const char *stream, const char *s, size_t n) {
	size_t o = 0;
	memcpy(entry, "{\"t\":\"", 6);
	o = 6;
	o += rfc3339nano(entry + o, 64);
	o += (size_t)sprintf(entry + o, "\",\"stream\":\"%s\",\"log\":", stream);
	o += append_string(entry + o, s, n);
	memcpy(entry + o, "}\n", 2);
	o += 2;
	if (maxsize > 0 && logsize > 0 && logsize + (long long)o > maxsize)
		rotate();
	write_all(logfd, entry, o);
	logsize += (long long)o;
}

/* Attach: a container started with a terminal ("tty") or an open stdin
   ("stdin") as the first operation of its plan gets a unix socket,
   DIR/attach.sock, that clients connect to. Both directions carry the
   frames of package api's attach protocol: a type byte, a big-endian
   32-bit length and at most FRAME_MAX bytes of payload. Clients send
   stdin (0), resize (3: rows and columns, big-endian 16 bits each) and
   close-stdin (4); the shim sends stdout (1) and stderr (2). Output made
   while no client is attached is kept (the newest UNSEEN_MAX bytes) for
   the next client, so the first attach of `berth run -it` sees the
   prompt the container printed before it connected. */
#define FRAME_STDIN 0
#define FRAME_STDOUT 1
#define FRAME_STDERR 2
#define FRAME_RESIZE 3
#define FRAME_CLOSE_STDIN 4
#define FRAME_HDR 5
#define FRAME_MAX (32 << 10)
#define MAX_CLIENTS 16
#define INPUT_MAX (64 << 10)
#define UNSEEN_MAX (64 << 10)

enum { MODE_NONE, MODE_TTY, MODE_STDIN };
static int mode = MODE_NONE;
static int input_fd = -1;      /* the pty master, or the write end of the stdin pipe */
static int input_close;        /* close input_fd once the queue is written */
static char input[INPUT_MAX];
static size_t input_len;
static int listen_fd = -1;
static char sockpath[64];

struct client {
	int fd;
	size_t len;
	unsigned char buf[FRAME_HDR + FRAME_MAX];
};
static struct client clients[MAX_CLIENTS];
static int nclients;
static unsigned char unseen[UNSEEN_MAX + FRAME_HDR + FRAME_MAX];
static size_t unseen_len;

static void put_header(unsigned char *h, int type, size_t n) {
	h[0] = (unsigned char)type;
	h[1] = (unsigned char)(n >> 24);
	h[2] = (unsigned char)(n >> 16);
	h[3] = (unsigned char)(n >> 8);
	h[4] = (unsigned char)n;
}

/* drop_client closes a client; the slot is reclaimed by compact_clients,
   so indices stay valid while the poll results are handled. */
static void drop_client(int i) {
	if (clients[i].fd >= 0)
		close(clients[i].fd);
	clients[i].fd = -1;
}

static void compact_clients(void) {
	int k = 0;
	for (int i = 0; i < nclients; i++)
		if (clients[i].fd >= 0)
			clients[k++] = clients[i];
	nclients = k;
}

/* send_all writes to a client; the socket has a send timeout, so a client
   that stops reading for that long is dropped rather than stalling the
   container (and everyone else) for good. */
static int send_all(int fd, const void *p, size_t n) {
	const char *c = p;
	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static void broadcast(int type, const char *p, size_t n) {
	if (mode == MODE_NONE || n == 0)
		return;
	while (n > 0) {
		size_t k = n > FRAME_MAX ? FRAME_MAX : n;
		unsigned char h[FRAME_HDR];
		put_header(h, type, k);
		int live = 0;
		for (int i = 0; i < nclients; i++)
			live |= clients[i].fd >= 0;
		if (!live) {
			/* Keep whole frames, dropping the oldest beyond UNSEEN_MAX. */
			while (unseen_len > 0 && unseen_len + FRAME_HDR + k > sizeof(unseen)) {
				size_t first = FRAME_HDR + ((size_t)unseen[1] << 24 | (size_t)unseen[2] << 16 | (size_t)unseen[3] << 8 | unseen[4]);
				memmove(unseen, unseen + first, unseen_len - first);
				unseen_len -= first;
			}
			memcpy(unseen + unseen_len, h, FRAME_HDR);
			memcpy(unseen + unseen_len + FRAME_HDR, p, k);
			unseen_len += FRAME_HDR + k;
			while (unseen_len > UNSEEN_MAX) {
				size_t first = FRAME_HDR + ((size_t)unseen[1] << 24 | (size_t)unseen[2] << 16 | (size_t)unseen[3] << 8 | unseen[4]);
				memmove(unseen, unseen + first, unseen_len - first);
				unseen_len -= first;
			}
		}
		for (int i = 0; i < nclients; i++) {
			if (clients[i].fd >= 0 && (send_all(clients[i].fd, h, FRAME_HDR) < 0 || send_all(clients[i].fd, p, k) < 0))
				drop_client(i);
		}
		p += k;
		n -= k;
	}
}

/* open_attach makes DIR/attach.sock. The path goes through an O_PATH
   descriptor of DIR, as DIR may be longer than a socket address holds. */
static void open_attach(void) {
	/* The container runs already: without a socket it goes on unattached. */
	int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		warn("open %s: %s", dir, strerror(errno));
		return;
	}
	/* dfd stays open: the path below names it until the shim exits. */
	snprintf(sockpath, sizeof(sockpath), "/proc/self/fd/%d/attach.sock", dfd);
	unlink(sockpath);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sockpath);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listen_fd, MAX_CLIENTS) < 0) {
		warn("attach socket %s/attach.sock: %s", dir, strerror(errno));
		if (listen_fd >= 0)
			close(listen_fd);
		listen_fd = -1;
	}
}

static void accept_client(void) {
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (nclients == MAX_CLIENTS) {
		close(fd);
		return;
	}
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (unseen_len > 0) {
		if (send_all(fd, unseen, unseen_len) < 0) {
			close(fd);
			return;
		}
		unseen_len = 0;
	}
	clients[nclients].fd = fd;
	clients[nclients].len = 0;
	nclients++;
}

/* client_frames handles the complete frames in c's buffer; it returns -1
   for a malformed stream. */
static int client_frames(struct client *c) {
	size_t off = 0;
	while (c->len - off >= FRAME_HDR) {
		unsigned char *h = c->buf + off;
		size_t n = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
		if (n > FRAME_MAX)
			return -1;
		if (c->len - off < FRAME_HDR + n)
			break;
		unsigned char *p = h + FRAME_HDR;
		switch (h[0]) {
		case FRAME_STDIN:
			if (input_fd >= 0 && !input_close) {
				if (input_len + n > INPUT_MAX)
					goto out; /* taken once the container has read more */
				memcpy(input + input_len, p, n);
				input_len += n;
			}
			break;
		case FRAME_RESIZE:
			if (n != 4)
				return -1;
			if (mode == MODE_TTY && input_fd >= 0) {
				struct winsize ws = {.ws_row = (unsigned short)(p[0] << 8 | p[1]), .ws_col = (unsigned short)(p[2] << 8 | p[3])};
				ioctl(input_fd, TIOCSWINSZ, &ws);
			}
			break;
		case FRAME_CLOSE_STDIN:
			/* A terminal has no end of input to pass on. */
			if (mode == MODE_STDIN)
				input_close = 1;
			break;
		default:
			return -1;
		}
		off += FRAME_HDR + n;
	}
out:
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
	return 0;
}

static void flush_input(void) {
	while (input_len > 0 && input_fd >= 0) {
		ssize_t w = write(input_fd, input, input_len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			/* The container closed its stdin: drop what is queued. */
			input_len = 0;
			if (mode == MODE_STDIN) {
				close(input_fd);
				input_fd = -1;
			}
			return;
		}
		memmove(input, input + w, input_len - (size_t)w);
		input_len -= (size_t)w;
	}
	if (input_len == 0 && input_close && mode == MODE_STDIN && input_fd >= 0) {
		close(input_fd);
		input_fd = -1;
	}
}

/* pump reads what is available on s; it returns 0 at EOF. */
static int pump(struct stream *s) {
	ssize_t n = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n <= 0) {
		if (s->len > 0)
			log_entry(s->name, s->buf, s->len);
		s->len = 0;
		return 0;
	}
	broadcast(s->type, s->buf + s->len, (size_t)n);
	s->len += (size_t)n;
	size_t start = 0;
	for (size_t i = s->len - (size_t)n; i < s->len; i++) {
		if (s->buf[i] == '\n') {
			log_entry(s->name, s->buf + start, i + 1 - start);
			start = i + 1;
		}
	}
	if (start == 0 && s->len == sizeof(s->buf)) {
		log_entry(s->name, s->buf, s->len);
		start = s->len;
	}
	memmove(s->buf, s->buf + start, s->len - start);
	s->len -= start;
	return 1;
}

static unsigned long long start_time(int pid) {
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* p is at the space before field 3; start time is field 22. */
	p++;
	for (int field = 3; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void write_atomic(const char *name, const char *data, size_t n) {
	char path[4200], tmp[4300];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("write %s: %s", tmp, strerror(errno));
	write_all(fd, data, n);
	close(fd);
	if (rename(tmp, path) < 0)
		die("rename %s: %s", tmp, strerror(errno));
}

static void write_exit(int code, int sig, const char *err) {
	char ts[64], buf[MAX_LINE * 6 + 256];
	rfc3339nano(ts, sizeof(ts));
	size_t o = (size_t)sprintf(buf, "{\"code\":%d,\"signal\":%d,\"finishedAt\":\"%s\"", code, sig, ts);
	if (err && *err) {
		o += (size_t)sprintf(buf + o, ",\"error\":");
		o += append_string(buf + o, err, strnlen(err, MAX_LINE));
	}
	buf[o++] = '}';
	write_atomic("exit.json", buf, o);
}

static char *read_file(const char *path, size_t *len) {
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	for (;;) {
		if (n == cap)
			b = realloc(b, cap *= 2);
		if (!b)
			die("out of memory");
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read %s: %s", path, strerror(errno));
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*len = n;
	return b;
}

static void copy_until_eof(struct stream *out, struct stream *err) {
	struct pollfd p[2] = {{.fd = out->fd, .events = POLLIN}, {.fd = err->fd, .events = POLLIN}};
	while (p[0].fd >= 0 || p[1].fd >= 0) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		struct stream *s[2] = {out, err};
		for (int i = 0; i < 2; i++) {
			if (p[i].fd >= 0 && p[i].revents) {
				if (!pump(s[i])) {
					close(p[i].fd);
					p[i].fd = -1;
				}
			}
		}
	}
}

static int wait_child(int pid, int *sig) {
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return 255;
	}
	*sig = 0;
	if (WIFSIGNALED(status)) {
		*sig = WTERMSIG(status);
		return 128 + *sig;
	}
	return WEXITSTATUS(status);
}

static struct stream out_stream = {.name = "stdout", .type = FRAME_STDOUT}, err_stream = {.name = "stderr", .type = FRAME_STDERR};

static struct stream tty_stream = {.name = "stdout", .type = FRAME_STDOUT, .fd = -1};

/* serve copies the container's output to the log and the attached
   clients, and their input to the container, until every output source
   is at its end: the pipes once the container exits (when PID 1 of the
   namespace exits, the kernel kills the rest), the pty master when the
   last descriptor of its terminal is closed. */
static void serve(void) {
	static struct pollfd p[5 + MAX_CLIENTS];
	for (;;) {
		for (int i = 0; i < nclients; i++)
			if (clients[i].fd >= 0 && client_frames(&clients[i]) < 0)
				drop_client(i);
		compact_clients();
		flush_input();
		int n = 0, i_out = -1, i_err = -1, i_tty = -1, i_in = -1, i_listen = -1;
		if (out_stream.fd >= 0) {
			i_out = n;
			p[n++] = (struct pollfd){.fd = out_stream.fd, .events = POLLIN};
		}
		if (err_stream.fd >= 0) {
			i_err = n;
			p[n++] = (struct pollfd){.fd = err_stream.fd, .events = POLLIN};
		}
		if (tty_stream.fd >= 0) {
			i_tty = n;
			p[n++] = (struct pollfd){.fd = tty_stream.fd, .events = POLLIN | (input_len > 0 ? POLLOUT : 0)};
		}
		if (n == 0)
			break;
		if (mode == MODE_STDIN && input_fd >= 0 && input_len > 0) {
			i_in = n;
			p[n++] = (struct pollfd){.fd = input_fd, .events = POLLOUT};
		}
		if (listen_fd >= 0) {
			i_listen = n;
			p[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
		}
		int first = n;
		for (int i = 0; i < nclients; i++)
			p[n++] = (struct pollfd){.fd = clients[i].fd, .events = clients[i].len < sizeof(clients[i].buf) ? POLLIN : 0};
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		struct {
			int idx;
			struct stream *s;
		} outs[3] = {{i_out, &out_stream}, {i_err, &err_stream}, {i_tty, &tty_stream}};
		for (int k = 0; k < 3; k++) {
			if (outs[k].idx < 0)
				continue;
			short re = p[outs[k].idx].revents;
			if ((re & POLLOUT) && outs[k].s == &tty_stream)
				flush_input();
			if ((re & (POLLIN | POLLHUP | POLLERR)) && !pump(outs[k].s)) {
				if (outs[k].s == &tty_stream && input_fd == tty_stream.fd)
					input_fd = -1;
				close(outs[k].s->fd);
				outs[k].s->fd = -1;
			}
		}
		if (i_in >= 0 && p[i_in].revents)
			flush_input();
		if (i_listen >= 0 && (p[i_listen].revents & POLLIN))
			accept_client();
		for (int i = 0, polled = n - first; i < polled; i++) {
			struct client *c = &clients[i];
			if (c->fd < 0 || !p[first + i].revents)
				continue;
			ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
			if (r < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (r <= 0) {
				drop_client(i);
				continue;
			}
			c->len += (size_t)r;
		}
	}
	if (listen_fd >= 0) {
		close(listen_fd);
		unlink(sockpath);
		listen_fd = -1;
	}
}

/* recv_fd takes the descriptor init sends on sock with SCM_RIGHTS, or -1. */
static int recv_fd(int sock) {
	char b;
	struct iovec iov = {.iov_base = &b, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	do {
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

void berth_shim(int argc, char **argv) {
	if (argc < 1 || argv == NULL || argv[0] == NULL)
		return;
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strcmp(base, "berth-shim") != 0)
		return;
	if (argc != 5)
		die("usage: berth-shim DIR LOG_MAX_SIZE LOG_MAX_FILES CLONE_FLAGS");
	/* The manager may die at any time: a write to its pipe must fail, not
	   kill the shim. */
	signal(SIGPIPE, SIG_IGN);
	fcntl(3, F_SETFD, FD_CLOEXEC);
	/* fd 4 is the manager's go pipe; init gets it as fd 5, so the byte
	   goes straight from the manager to init. Move it out of the way of
	   the dup2s below. */
	int gofd = fcntl(4, F_DUPFD_CLOEXEC, 10);
	if (gofd < 0)
		die("dup go pipe: %s", strerror(errno));
	close(4);
	dir = argv[1];
	maxsize = atoll(argv[2]);
	maxfiles = atoi(argv[3]);
	unsigned long flags = strtoul(argv[4], NULL, 0);
	snprintf(logpath, sizeof(logpath), "%s/container.log", dir);

	char cfgpath[4200];
	snprintf(cfgpath, sizeof(cfgpath), "%s/init.plan", dir);
	size_t cfglen;
	char *cfg = read_file(cfgpath, &cfglen);
	open_log();

	if (cfglen >= 4 && memcmp(cfg, "tty", 4) == 0)
		mode = MODE_TTY;
	else if (cfglen >= 6 && memcmp(cfg, "stdin", 6) == 0)
		mode = MODE_STDIN;

	int outp[2], errp[2], cfgp[2], statp[2], consp[2] = {-1, -1}, inp[2] = {-1, -1};
	if (pipe2(outp, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) || pipe2(cfgp, O_CLOEXEC) || pipe2(statp, O_CLOEXEC))
		die("pipe: %s", strerror(errno));
	/* init sends the master of the terminal it opens in the container's
	   /dev/pts on its fd 6; a container with an open stdin reads a pipe. */
	if (mode == MODE_TTY && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, consp) < 0)
		die("socketpair: %s", strerror(errno));
	if (mode == MODE_STDIN && pipe2(inp, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	int devnull = mode == MODE_STDIN ? inp[0] : open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0)
		die("open /dev/null: %s", strerror(errno));

	pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0) {
		dprintf(3, "err 127 clone init: %s\n", strerror(errno));
		die("clone: %s", strerror(errno));
	}
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL); /* an ignored signal would stay ignored across exec */
		if (dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 || dup2(errp[1], 2) < 0 || dup2(cfgp[0], 3) < 0 || dup2(statp[1], 4) < 0 || dup2(gofd, 5) < 0)
			_exit(127);
		if (consp[1] >= 0 && dup2(consp[1], 6) < 0)
			_exit(127);
		char *args[] = {"berth-init", (char *)dir, NULL};
		char *env[] = {NULL};
		execve("/proc/self/exe", args, env);
		dprintf(4, "127 exec init: %s", strerror(errno));
		_exit(127);
	}
	close(devnull);
	close(outp[1]);
	close(errp[1]);
	close(cfgp[0]);
	close(statp[1]);
	close(gofd);
	if (consp[1] >= 0)
		close(consp[1]);
	out_stream.fd = outp[0];
	err_stream.fd = errp[0];

	dprintf(3, "pid %d\n", (int)pid);
	/* init sets up the rootfs while the manager moves it into the cgroup
	   (on cgroup v1 a migration waits for an RCU grace period); it execs
	   the command only after the manager's go byte on its fd 5, so no
	   user code runs outside the cgroup. If the manager gives up, init
	   reads EOF and fails like any start error. */
	write_all(cfgp[1], cfg, cfglen);
	close(cfgp[1]);
	free(cfg);

	/* init writes "CODE message" when it fails; a successful exec closes the pipe. */
	char msg[4096];
	size_t mlen = 0;
	for (;;) {
		ssize_t n = read(statp[0], msg + mlen, sizeof(msg) - 1 - mlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		mlen += (size_t)n;
		if (mlen == sizeof(msg) - 1)
			break;
	}
	msg[mlen] = '\0';
	close(statp[0]);
	if (mlen > 0) {
		copy_until_eof(&out_stream, &err_stream);
		int sig;
		int code = wait_child(pid, &sig);
		char *text = strchr(msg, ' ');
		text = text ? text + 1 : msg;
		if (code <= 0 || sig)
			code = atoi(msg) > 0 ? atoi(msg) : 127;
		write_exit(code, 0, text);
		dprintf(3, "err %d %s\n", code, text);
		_exit(0);
	}

	if (mode == MODE_TTY) {
		int master = recv_fd(consp[0]);
		if (master < 0)
			die("init sent no terminal");
		fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
		tty_stream.fd = input_fd = master;
	} else if (mode == MODE_STDIN) {
		fcntl(inp[1], F_SETFL, fcntl(inp[1], F_GETFL) | O_NONBLOCK);
		input_fd = inp[1];
	}
	if (consp[0] >= 0)
		close(consp[0]);
	if (mode != MODE_NONE)
		open_attach();

	char ts[64], state[512];
	rfc3339nano(ts, sizeof(ts));
	int self = getpid();
	int len = snprintf(state, sizeof(state), "{\"pid\":%d,\"pidStart\":%llu,\"shimPid\":%d,\"shimStart\":%llu,\"startedAt\":\"%s\"}",
	                   (int)pid, start_time(pid), self, start_time(self), ts);
	write_atomic("state.json", state, (size_t)len);
	dprintf(3, "ok\n");
	close(3);

	serve();
	int sig;
	int code = wait_child(pid, &sig);
	write_exit(code, sig, NULL);
	_exit(0);
}
