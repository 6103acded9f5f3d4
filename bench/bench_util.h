/* bench/bench_util.h: what the C benchmarks share (handoff, wait, load,
 * peers): a clock, percentiles, the raw SOCK_SEQPACKET round trip they are
 * measured beside, starting and stopping screed, and the small fatal-error
 * wrappers a benchmark uses around libscreeclient. A benchmark is a program,
 * not a library: these helpers print and exit on the errors they name. */
#ifndef SCREE_BENCH_UTIL_H
#define SCREE_BENCH_UTIL_H

#include <stdint.h>
#include <sys/types.h>

#include "scree/client.h"

/* The program's name, used as the prefix of every message these helpers
 * print; each benchmark's main sets it first. */
extern const char *bench_prog;

/* Microseconds on CLOCK_MONOTONIC. */
double bench_now_us(void);
void bench_sleep_ms(long ms);

typedef struct bench_stat2 {
  double p50, p99;
} bench_stat2;

/* Sorts v (n > 0 samples) in place and returns its median and 99th
 * percentile. */
bench_stat2 bench_summarize(double *v, int n);

/* The raw round trip: a 64-byte SOCK_SEQPACKET ping-pong with an echo child
 * that lives from bench_raw_start to bench_raw_stop, so that its samples
 * can be taken interleaved with the scree ones: on a shared machine the
 * load changes within seconds, and only samples taken side by side
 * compare. bench_raw_one returns one round trip in microseconds;
 * bench_raw_sample stores n of them into t. */
void bench_raw_start(void);
double bench_raw_one(void);
void bench_raw_sample(double *t, int n);
void bench_raw_stop(void);

/* "64", "1K", "1M", "1G" (either case) as bytes; 0 when s has no number. */
uint64_t bench_parse_size(const char *s);

/* 1 when a SOCK_SEQPACKET connect to path succeeds, else 0. */
int bench_can_connect(const char *path);

/* Polls path every 10 ms, at most tries times; 1 once it accepts. */
int bench_await_socket(const char *path, int tries);

/* Runs argv (argv[0] is screed's path) and waits up to tries * 10 ms for
 * sock to accept; exits the benchmark when it does not. */
pid_t bench_spawn_screed(char *const *argv, const char *sock, int tries);

/* Stops a screed started by bench_spawn_screed with SIGTERM and waits for
 * it; returns 0 when it exited cleanly, else says so on stderr and
 * returns 1. */
int bench_stop_screed(pid_t pid);

/* scree_client_connect, or exit with the client's message. */
scree_client *bench_connect(const char *path);

/* Exits with what and the client's message unless rc is 0. */
void bench_must(scree_client *c, int rc, const char *what);

/* Describes a batch of bfloat16 rows width wide with int64 offsets: the
 * shape every host benchmark puts. Zeroes the rest of *a. */
void bench_bf16_desc(scree_array *a, int64_t width, int64_t batch_size, int64_t total_rows);

#endif
