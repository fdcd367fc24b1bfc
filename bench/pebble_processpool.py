"""Python's process pools, the baselines of bench-pool-process.

Usage: pebble_processpool.py pebble|pebble-map|futures N WORKERS [CHUNKSIZE]
  pebble      pebble.ProcessPool: schedule N trivial tasks, wait for each
  pebble-map  pebble.ProcessPool.map(chunksize=CHUNKSIZE), read every result
  futures     concurrent.futures.ProcessPoolExecutor: submit N, wait for each
Prints one line: tasks per second, from the first schedule to the last
result, on a warm pool. Exits 77 (skip) if pebble is not installed.
"""
import sys
import time
from concurrent.futures import ProcessPoolExecutor

try:
    from pebble import ProcessPool
except ImportError:
    sys.exit(77)


def job(x):
    return x


def main():
    mode, n, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    if mode == "futures":
        pool = ProcessPoolExecutor(max_workers=workers)
        for f in [pool.submit(job, 0) for _ in range(workers * 4)]:
            f.result()  # the workers are up
        t0 = time.perf_counter()
        for f in [pool.submit(job, i) for i in range(n)]:
            f.result()
        t1 = time.perf_counter()
        pool.shutdown()
    else:
        pool = ProcessPool(max_workers=workers)
        for f in [pool.schedule(job, args=(0,)) for _ in range(workers * 4)]:
            f.result()
        t0 = time.perf_counter()
        if mode == "pebble":
            for f in [pool.schedule(job, args=(i,)) for i in range(n)]:
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
