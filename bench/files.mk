# bench/: emq-bench, the benchmark suite (make bench; docs/performance.md).
BENCH_SRC := bench/main.c bench/util.c bench/baseline.c bench/emq.c bench/router_alone.c \
             bench/beanstalkd.c bench/compare.c bench/procstat.c bench/scale.c
