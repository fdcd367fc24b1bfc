"""Python Pebble's concurrent.process, the comparator of bench-process:
N sequential calls of a trivial echo, each in a new process. Prints
"calls_per_s <rate>", or "skip" (exit 77) if python3-pebble is missing.
Run with Debian's /usr/bin/python3."""
import sys
import time

try:
    from pebble import concurrent
except ImportError:
    print("skip: python3-pebble is not installed")
    sys.exit(77)


@concurrent.process
def echo(data):
    return data


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    echo(b"warm-up!").result()
    start = time.monotonic()
    for _ in range(calls):
        if echo(b"pebble!\0").result() != b"pebble!\0":
            sys.exit("wrong answer")
    print("calls_per_s %.1f" % (calls / (time.monotonic() - start)))


if __name__ == "__main__":
    main()
