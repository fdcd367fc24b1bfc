"""Python Pebble's ThreadPool, the baseline of bench-pool-thread.

Usage: pebble_threadpool.py schedule|map N WORKERS [CHUNKSIZE]
Prints one line: tasks per second, from the first schedule to the last
result, on a warm pool. Exits 77 (skip) if pebble is not installed.
"""
import sys
import time

try:
    from pebble import ThreadPool
except ImportError:
    sys.exit(77)


def job(x):
    return x


def main():
    mode, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    pool = ThreadPool(max_workers=workers)
    for f in [pool.schedule(job, args=(0,)) for _ in range(workers * 4)]:
        f.result()  # the workers are up
    t0 = time.perf_counter()
    if mode == "schedule":
        futures = [pool.schedule(job, args=(i,)) for i in range(n)]
        for f in futures:
            f.result()
    else:
        for _ in pool.map(job, range(n), chunksize=chunk).result():
            pass
    t1 = time.perf_counter()
    pool.close()
    pool.join()
    print(n / (t1 - t0))


if __name__ == "__main__":
    main()
