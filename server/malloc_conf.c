/*
 * jemalloc's options for the programs linked with it (ao_malloc in
 * CMakeLists.txt, //server:ao_malloc in Bazel): jemalloc reads this
 * variable when it starts, before main, and MALLOC_CONF in the environment
 * overrides it.
 *
 * background_thread: freed pages are returned to the kernel (madvise) by
 * jemalloc's own thread, on its schedule, instead of inside whichever
 * malloc or free crosses the decay deadline. Without it that was the event
 * processor, more often than any other thread: 2% of a fan-out's CPU time
 * spent in madvise on the thread every task waits for, and the page faults
 * that follow. With it the fan-out of 10,000 takes about 0.9x the time
 * (docs/benchmarks.md).
 */
const char *malloc_conf = "background_thread:true";
