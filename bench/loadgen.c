/*
 * securesock benchmark load generator and plaintext backend (loopback only).
 *
 *   loadgen echo    PORT CLIENTS SECONDS SIZE   request/response over TLS, latency per request
 *   loadgen ttfb    PORT RATE SECONDS THREADS   new TLS connections at a fixed rate, time to first byte
 *   loadgen recv    PORT BYTES                  the server sends BYTES (command "S n")
 *   loadgen send    PORT BYTES                  the client sends BYTES (command "R n"), waits for "OK"
 *   loadgen idle    PORT COUNT                  holds COUNT TLS connections until stdin closes
 *   loadgen pages   PORT SECONDS                one connection after the other, each asking one page
 *                                               (as openssl s_time -new -www /, which cannot speak plain TCP)
 *   loadgen backend PORT                        plaintext server of the same commands (for stunnel)
 *   loadgen plain   (prefix: LOADGEN_PLAIN=1 makes the clients speak TCP without TLS)
 *
 * The commands, sent as the first line of a connection:
 *   "E\n"      echo everything that follows
 *   "S n\n"    server sends n bytes
 *   "R n\n"    server reads n bytes, answers "OK\n"
 *   "GET ..."  an HTTP/1.0 answer, then close (openssl s_time -www)
 *
 * LOADGEN_TLS=1.2|1.3 fixes the protocol version.  Every loop is bounded by
 * a deadline or a count; every connection is to 127.0.0.1.
 * Build: gcc -O2 -o loadgen loadgen.c -lssl -lcrypto -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static SSL_CTX *ctx;
static int port;
static int plain;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    ERR_print_errors_fp(stderr);
    exit(2);
}

typedef struct {
    int fd;
    SSL *ssl;
} conn_t;

static int tcpConnect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int openConn(conn_t *c) {
    c->ssl = NULL;
    c->fd = tcpConnect();
    if (c->fd < 0) return -1;
    if (plain) return 0;
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    if (SSL_connect(c->ssl) != 1) {
        SSL_free(c->ssl);
        close(c->fd);
        c->ssl = NULL;
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void closeConn(conn_t *c) {
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->ssl = NULL;
}

static int cwrite(conn_t *c, const void *buf, int n) {
    if (plain) {
        int done = 0;
        while (done < n) {
            ssize_t r = send(c->fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);
            if (r <= 0) return -1;
            done += r;
        }
        return n;
    }
    int r = SSL_write(c->ssl, buf, n);
    return r == n ? n : -1;
}

static int cread(conn_t *c, void *buf, int n) {
    if (plain) return (int)recv(c->fd, buf, n, 0);
    return SSL_read(c->ssl, buf, n);
}

static int readExactly(conn_t *c, char *buf, long n) {
    long got = 0;
    while (got < n) {
        int r = cread(c, buf + got, (int)(n - got));
        if (r <= 0) return -1;
        got += r;
    }
    return 0;
}

static int cmpDouble(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *v, long n, double p) {
    if (n == 0) return 0;
    long i = (long)(p * (n - 1) + 0.5);
    return v[i];
}

/* ---- echo ---------------------------------------------------------------- */

typedef struct {
    double deadline;
    int size;
    long count;
    long cap;
    double *lat;
    int failed;
} echo_t;

static void *echoThread(void *arg) {
    echo_t *e = arg;
    conn_t c;
    char out[65536], in[65536];
    memset(out, 'x', sizeof out);
    if (openConn(&c) < 0) {
        e->failed = 1;
        return NULL;
    }
    if (cwrite(&c, "E\n", 2) < 0) e->failed = 1;
    while (!e->failed && e->count < e->cap) {
        double t = now();
        if (t >= e->deadline) break;
        if (cwrite(&c, out, e->size) < 0 || readExactly(&c, in, e->size) < 0) {
            e->failed = 1;
            break;
        }
        e->lat[e->count++] = now() - t;
    }
    closeConn(&c);
    return NULL;
}

static int runEcho(int clients, double seconds, int size) {
    if (clients < 1 || clients > 1000 || size < 1 || size > 65536) return 2;
    pthread_t th[1000];
    echo_t *e = calloc(clients, sizeof *e);
    double start = now();
    long cap = (long)(seconds * 200000) + 1000;
    for (int i = 0; i < clients; i++) {
        e[i].deadline = start + seconds;
        e[i].size = size;
        e[i].cap = cap;
        e[i].lat = malloc(sizeof(double) * cap);
        pthread_create(&th[i], NULL, echoThread, &e[i]);
    }
    long total = 0;
    int failed = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        total += e[i].count;
        failed += e[i].failed;
    }
    double elapsed = now() - start;
    double *all = malloc(sizeof(double) * (total + 1));
    long k = 0;
    for (int i = 0; i < clients; i++) {
        memcpy(all + k, e[i].lat, sizeof(double) * e[i].count);
        k += e[i].count;
    }
    qsort(all, total, sizeof(double), cmpDouble);
    printf("requests %ld seconds %.4f p50_us %.1f p99_us %.1f failed %d\n", total, elapsed,
           percentile(all, total, 0.5) * 1e6, percentile(all, total, 0.99) * 1e6, failed);
    return failed ? 1 : 0;
}

/* ---- time to first byte at a fixed connection rate ------------------------ */

typedef struct {
    int index, threads;
    double start, rate;
    long slots;
    double *lat;
    int failed;
} ttfb_t;

static void *ttfbThread(void *arg) {
    ttfb_t *t = arg;
    for (long slot = t->index; slot < t->slots; slot += t->threads) {
        double due = t->start + slot / t->rate;
        double wait = due - now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
        /* measured from the scheduled time: a late start counts (no coordinated omission) */
        conn_t c;
        char b;
        if (openConn(&c) < 0 || cwrite(&c, "E\nx", 3) < 0 || readExactly(&c, &b, 1) < 0) {
            t->failed++;
            t->lat[slot] = -1;
        } else {
            t->lat[slot] = now() - due;
        }
        closeConn(&c);
    }
    return NULL;
}

static int runTTFB(double rate, double seconds, int threads) {
    if (rate <= 0 || rate > 20000 || threads < 1 || threads > 1000 || seconds > 600) return 2;
    long slots = (long)(rate * seconds);
    double *lat = calloc(slots + 1, sizeof(double));
    pthread_t th[1000];
    ttfb_t *t = calloc(threads, sizeof *t);
    double start = now() + 0.05;
    for (int i = 0; i < threads; i++) {
        t[i] = (ttfb_t){i, threads, start, rate, slots, lat, 0};
        pthread_create(&th[i], NULL, ttfbThread, &t[i]);
    }
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        failed += t[i].failed;
    }
    long k = 0;
    for (long i = 0; i < slots; i++)
        if (lat[i] >= 0) lat[k++] = lat[i];
    qsort(lat, k, sizeof(double), cmpDouble);
    printf("connections %ld p50_us %.1f p99_us %.1f failed %d\n", k, percentile(lat, k, 0.5) * 1e6,
           percentile(lat, k, 0.99) * 1e6, failed);
    return failed ? 1 : 0;
}

/* ---- one page per connection, one connection after the other -------------- */

static int runPages(double seconds) {
    if (seconds <= 0 || seconds > 600) return 2;
    static const char request[] = "GET / HTTP/1.0\r\n\r\n";
    char buf[4096];
    long done = 0;
    int failed = 0;
    double start = now(), deadline = start + seconds;
    while (now() < deadline && done < 10000000 && failed < 100) {
        conn_t c;
        if (openConn(&c) < 0 || cwrite(&c, request, (int)strlen(request)) < 0) {
            failed++;
            closeConn(&c);
            continue;
        }
        /* the page, to the server's close; counted only if it is an HTTP 200 */
        long got = 0;
        char head[16] = {0}; /* the status line's first 12 bytes */
        for (int reads = 0; reads < 1000; reads++) {
            int r = cread(&c, buf, sizeof buf);
            if (r <= 0) break;
            if (got < 12) {
                long take = r < 12 - got ? r : 12 - got;
                memcpy(head + got, buf, take);
            }
            got += r;
        }
        if (strncmp(head, "HTTP/1.0 200", 12) == 0)
            done++;
        else
            failed++;
        closeConn(&c);
    }
    printf("connections %ld seconds %.4f failed %d\n", done, now() - start, failed);
    return failed ? 1 : 0;
}

/* ---- bulk ------------------------------------------------------------------ */

static int runBulk(int serverSends, long bytes) {
    conn_t c;
    static char buf[1 << 18];
    memset(buf, 'b', sizeof buf);
    if (openConn(&c) < 0) die("connect");
    char cmd[64];
    int n = snprintf(cmd, sizeof cmd, "%c %ld\n", serverSends ? 'S' : 'R', bytes);
    double start = now();
    if (cwrite(&c, cmd, n) < 0) die("write");
    long done = 0;
    if (serverSends) {
        while (done < bytes) {
            long want = bytes - done < (long)sizeof buf ? bytes - done : (long)sizeof buf;
            int r = cread(&c, buf, (int)want);
            if (r <= 0) die("read");
            done += r;
        }
    } else {
        while (done < bytes) {
            long want = bytes - done < (long)sizeof buf ? bytes - done : (long)sizeof buf;
            if (cwrite(&c, buf, (int)want) < 0) die("write");
            done += want;
        }
        char ok[3];
        if (readExactly(&c, ok, 3) < 0 || memcmp(ok, "OK\n", 3) != 0) die("no OK");
    }
    double elapsed = now() - start;
    printf("bytes %ld seconds %.4f\n", bytes, elapsed);
    closeConn(&c);
    return 0;
}

/* ---- idle connections ------------------------------------------------------ */

static int runIdle(int count) {
    if (count < 1 || count > 100000) return 2;
    conn_t *c = calloc(count, sizeof *c);
    for (int i = 0; i < count; i++) {
        char b;
        if (openConn(&c[i]) < 0 || cwrite(&c[i], "E\nx", 3) < 0 || readExactly(&c[i], &b, 1) < 0) {
            fprintf(stderr, "loadgen: idle connection %d failed\n", i);
            return 1;
        }
    }
    printf("READY %d\n", count);
    fflush(stdout);
    char line[16];
    while (fgets(line, sizeof line, stdin) != NULL) {
    }
    for (int i = 0; i < count; i++) closeConn(&c[i]);
    return 0;
}

/* ---- plaintext backend (behind stunnel and the relay) ------------------------ */

static void *serveOne(void *arg) {
    int fd = (int)(intptr_t)arg;
    static const char page[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n";
    char buf[1 << 16];
    char line[128];
    int used = 0;
    for (;;) { /* the command line, at most 127 bytes */
        ssize_t r = recv(fd, line + used, sizeof line - 1 - used, 0);
        if (r <= 0) goto done;
        used += r;
        line[used] = 0;
        char *nl = memchr(line, '\n', used);
        if (nl) break;
        if (used >= (int)sizeof line - 1) goto done;
    }
    char *nl = memchr(line, '\n', used);
    int rest = used - (int)(nl + 1 - line);
    if (line[0] == 'E') {
        if (rest > 0 && send(fd, nl + 1, rest, MSG_NOSIGNAL) < 0) goto done;
        for (;;) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) break;
            if (send(fd, buf, r, MSG_NOSIGNAL) != r) break;
        }
    } else if (line[0] == 'S') {
        long n = atol(line + 2);
        memset(buf, 's', sizeof buf);
        while (n > 0) {
            ssize_t r = send(fd, buf, n < (long)sizeof buf ? n : (long)sizeof buf, MSG_NOSIGNAL);
            if (r <= 0) break;
            n -= r;
        }
        recv(fd, buf, 1, 0); /* until the client closes */
    } else if (line[0] == 'R') {
        long n = atol(line + 2) - rest;
        while (n > 0) {
            ssize_t r = recv(fd, buf, n < (long)sizeof buf ? n : (long)sizeof buf, 0);
            if (r <= 0) break;
            n -= r;
        }
        send(fd, "OK\n", 3, MSG_NOSIGNAL);
        recv(fd, buf, 1, 0);
    } else if (line[0] == 'G') {
        send(fd, page, sizeof page - 1, MSG_NOSIGNAL);
    }
done:
    close(fd);
    return NULL;
}

static int runBackend(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4096) < 0) die("listen");
    socklen_t len = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &len);
    printf("READY %d\n", ntohs(a.sin_port));
    fflush(stdout);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (;;) {
        int fd = accept(s, NULL, NULL);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, &attr, serveOne, (void *)(intptr_t)fd) != 0) close(fd);
    }
    return 0; /* not reached: the backend runs until it is stopped by its PID */
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc < 3) {
        fprintf(stderr, "usage: loadgen MODE PORT ...\n");
        return 2;
    }
    port = atoi(argv[2]);
    plain = getenv("LOADGEN_PLAIN") != NULL;
    if (strcmp(argv[1], "backend") == 0) return runBackend();
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    const char *v = getenv("LOADGEN_TLS");
    if (v && strcmp(v, "1.2") == 0) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    } else if (v && strcmp(v, "1.3") == 0) {
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    }
    if (strcmp(argv[1], "echo") == 0 && argc == 6)
        return runEcho(atoi(argv[3]), atof(argv[4]), atoi(argv[5]));
    if (strcmp(argv[1], "ttfb") == 0 && argc == 6)
        return runTTFB(atof(argv[3]), atof(argv[4]), atoi(argv[5]));
    if (strcmp(argv[1], "recv") == 0 && argc == 4) return runBulk(1, atol(argv[3]));
    if (strcmp(argv[1], "send") == 0 && argc == 4) return runBulk(0, atol(argv[3]));
    if (strcmp(argv[1], "idle") == 0 && argc == 4) return runIdle(atoi(argv[3]));
    if (strcmp(argv[1], "pages") == 0 && argc == 4) return runPages(atof(argv[3]));
    fprintf(stderr, "loadgen: unknown mode or arguments\n");
    return 2;
}
