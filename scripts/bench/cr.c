/*
 * cr: a small constant-rate (open-loop) HTTP/1.1 load generator for the adsrv bench suite.
 *
 *   cr HOST PORT RATE SECONDS CONNECTIONS PATHS_FILE [WARMUP_SECONDS]
 *
 * Request k is due at t0 + k/RATE, whatever happened before (open loop, like wrk2): it goes out
 * on an idle keep-alive connection, or waits for one, and its latency is measured from the time
 * it was due, so a stalled server is charged for every request it delayed (no coordinated
 * omission). Between sends it sleeps in epoll_pwait2 until the next request is due (1 us timer
 * slack) or a response arrives, and while no connection is free it waits for a response only:
 * it never spins, so it leaves the CPU to the server, above all while the server is stalled
 * (an earlier version armed a timerfd a microsecond ahead while all connections were busy,
 * which kept it at 98-99 % of a core at 42,000 req/s, docs/performance.md). Paths are cycled
 * from PATHS_FILE (one per line). Prints one JSON line. Requests due during the warm-up are sent
 * but not counted. The JSON line also gives the
 * generator's own CPU time (cpu_us, user + system, warm-up included) and its wall time (wall_us),
 * since on a small machine the generator's share of the cores bounds what a server can do.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HIST_US 2000000 /* 1 us buckets up to 2 s, then one overflow bucket */
#define BUF 16384

typedef struct {
  int fd;
  int busy;
  uint64_t due_ns; /* when the in-flight request was due */
  int counted;
  char buf[BUF];
  int len;
} conn_t;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct sockaddr_in addr;
static int epfd;
static uint32_t *hist;
static uint64_t overflow, completed, errors, non2xx, sent, max_us;

static int connect_one(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void record(conn_t *c, uint64_t t) {
  if (!c->counted) return;
  uint64_t us = (t - c->due_ns) / 1000;
  if (us > max_us) max_us = us;
  if (us < HIST_US) hist[us]++;
  else overflow++;
}

static uint64_t percentile(double p, uint64_t total) {
  uint64_t want = (uint64_t)(p * (double)total + 0.999999), seen = 0;
  if (want == 0) want = 1;
  for (uint64_t i = 0; i < HIST_US; i++) {
    seen += hist[i];
    if (seen >= want) return i;
  }
  return max_us;
}

static void reconnect(conn_t *c, int index) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = connect_one();
  c->len = 0;
  c->busy = 0;
  if (c->fd >= 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)index};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
  }
}

/* Returns 1 when a whole response is in the buffer (and consumes it), 0 if more is needed,
 * -1 on a malformed response. */
static int parse(conn_t *c, int *status) {
  c->buf[c->len] = 0;
  char *end = strstr(c->buf, "\r\n\r\n");
  if (end == NULL) return c->len >= BUF - 1 ? -1 : 0;
  if (c->len < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0) return -1;
  *status = atoi(c->buf + 9);
  long body = -1;
  for (char *p = c->buf; p < end; p++) {
    if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
      body = strtol(p + 15, NULL, 10);
      break;
    }
  }
  if (body < 0) return -1;
  long total = (end - c->buf) + 4 + body;
  if (c->len < total) return total >= BUF ? -1 : 0;
  memmove(c->buf, c->buf + total, (size_t)(c->len - total));
  c->len -= (int)total;
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: cr HOST PORT RATE SECONDS CONNECTIONS PATHS_FILE [WARMUP_SECONDS]\n");
    return 2;
  }
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  double rate = atof(argv[3]), seconds = atof(argv[4]);
  int nconn = atoi(argv[5]);
  double warmup = argc > 7 ? atof(argv[7]) : 1.0;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)atoi(argv[2]));
  inet_pton(AF_INET, argv[1], &addr.sin_addr);

  /* Requests, prebuilt. */
  FILE *f = fopen(argv[6], "r");
  if (!f) { perror("paths"); return 2; }
  char line[2048];
  int npaths = 0, cap = 1024;
  char **reqs = malloc(sizeof(char *) * (size_t)cap);
  size_t *lens = malloc(sizeof(size_t) * (size_t)cap);
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0]) continue;
    if (npaths == cap) {
      cap *= 2;
      reqs = realloc(reqs, sizeof(char *) * (size_t)cap);
      lens = realloc(lens, sizeof(size_t) * (size_t)cap);
    }
    char *r = malloc(2300);
    int n = snprintf(r, 2300, "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", line, argv[1], argv[2]);
    reqs[npaths] = r;
    lens[npaths++] = (size_t)n;
  }
  fclose(f);
  if (npaths == 0) { fprintf(stderr, "no paths\n"); return 2; }

  hist = calloc(HIST_US, sizeof(uint32_t));
  conn_t *conns = calloc((size_t)nconn, sizeof(conn_t));
  epfd = epoll_create1(0);
  for (int i = 0; i < nconn; i++) {
    conns[i].fd = connect_one();
    if (conns[i].fd < 0) { perror("connect"); return 1; }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_ADD, conns[i].fd, &ev);
  }

  uint64_t started_ns = now_ns();
  uint64_t t0 = started_ns + 1000000;
  uint64_t interval = (uint64_t)(1e9 / rate);
  uint64_t total = (uint64_t)(rate * (seconds + warmup));
  uint64_t warm = (uint64_t)(rate * warmup);
  uint64_t k = 0; /* next request to send */
  uint64_t end_ns = t0 + (uint64_t)((seconds + warmup) * 1e9);
  int next_idle = 0;
  struct epoll_event events[256];

  for (;;) {
    uint64_t t = now_ns();
    /* Send every request that is due, while a connection is idle. */
    while (k < total && t0 + k * interval <= t) {
      int found = -1;
      for (int j = 0; j < nconn; j++) {
        int i = (next_idle + j) % nconn;
        if (!conns[i].busy && conns[i].fd >= 0) { found = i; break; }
      }
      if (found < 0) break;
      next_idle = (found + 1) % nconn;
      conn_t *c = &conns[found];
      const char *r = reqs[k % (uint64_t)npaths];
      size_t n = lens[k % (uint64_t)npaths];
      if (write(c->fd, r, n) != (ssize_t)n) {
        errors += k >= warm;
        reconnect(c, found);
        k++;
        continue;
      }
      c->busy = 1;
      c->due_ns = t0 + k * interval;
      c->counted = k >= warm;
      sent += c->counted;
      k++;
    }
    int inflight = 0, ready = 0; /* ready: idle and connected (a failed reconnect is neither) */
    for (int i = 0; i < nconn; i++) {
      inflight += conns[i].busy;
      ready += !conns[i].busy && conns[i].fd >= 0;
    }
    if (k >= total && inflight == 0) break;
    if (t > end_ns + 5000000000ull) { errors += (uint64_t)inflight; break; } /* 5 s drain limit */
    /* Sleep until the next request is due or a response arrives; when a request is already due
     * but every connection is busy, until a response frees one (at most 100 ms: the drain check). */
    struct timespec wait = {0, 100000000};
    if (k < total) {
      uint64_t due = t0 + k * interval, now = now_ns();
      if (due > now) {
        wait.tv_sec = (time_t)((due - now) / 1000000000ull);
        wait.tv_nsec = (long)((due - now) % 1000000000ull);
      } else if (ready > 0) {
        wait.tv_nsec = 0;
      }
    }
    int n = epoll_pwait2(epfd, events, 256, &wait, NULL);
    if (n < 0 && errno != EINTR) { perror("epoll_pwait2 (Linux 5.11 or later)"); return 1; }
    uint64_t after = now_ns();
    for (int e = 0; e < n; e++) {
      uint32_t i = events[e].data.u32;
      conn_t *c = &conns[i];
      ssize_t got = read(c->fd, c->buf + c->len, (size_t)(BUF - 1 - c->len));
      if (got <= 0) {
        if (got < 0 && errno == EAGAIN) continue;
        if (c->busy) errors += c->counted;
        reconnect(c, (int)i);
        continue;
      }
      c->len += (int)got;
      int status = 0, r;
      while (c->busy && (r = parse(c, &status)) != 0) {
        if (r < 0) {
          errors += c->counted;
          reconnect(c, (int)i);
          break;
        }
        record(c, after);
        if (c->counted) {
          completed++;
          if (status < 200 || status > 299) non2xx++;
        }
        c->busy = 0;
      }
    }
  }
  uint64_t recorded = 0;
  for (uint64_t i = 0; i < HIST_US; i++) recorded += hist[i];
  recorded += overflow;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  uint64_t cpu_us = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000ull +
                    (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  uint64_t wall_us = (now_ns() - started_ns) / 1000;
  printf("{\"rate\":%.0f,\"seconds\":%.1f,\"connections\":%d,\"sent\":%llu,\"completed\":%llu,"
         "\"errors\":%llu,\"non2xx\":%llu,\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,"
         "\"p999_us\":%llu,\"max_us\":%llu,\"cpu_us\":%llu,\"wall_us\":%llu}\n",
         rate, seconds, nconn, (unsigned long long)sent, (unsigned long long)completed,
         (unsigned long long)errors, (unsigned long long)non2xx,
         (unsigned long long)percentile(0.50, recorded), (unsigned long long)percentile(0.90, recorded),
         (unsigned long long)percentile(0.99, recorded), (unsigned long long)percentile(0.999, recorded),
         (unsigned long long)max_us, (unsigned long long)cpu_us, (unsigned long long)wall_us);
  return 0;
}
