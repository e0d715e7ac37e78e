"""A reproducible fault run against the whole delivery path, every part real.

    python -m bench.chaos --faults 120 --mode both --seed 1

pty sensor -> gateway -> TCP proxy -> mosquitto (persistence off) -> consumer
-> SQLite `readings`, with the gateway's state dir on a small tmpfs. Faults of
seven kinds are injected one after the other on a schedule drawn from the seed
(rounds that each hold every kind once, in a shuffled order): broker SIGKILL
and restart, gateway SIGKILL and restart, consumer SIGKILL and restart, the
link stalled or cut (alternately) through the proxy, the serial device
unplugged and replugged, the store's disk filled then freed, and the link slowed
to 4 KB/s through the proxy (a slow cellular link) for a while. The device
sends lines before, during and after each fault; after each fault the run
waits until the path has settled before the next one.

At the end it prints, per mode, one table with a column per delivery class,
the faults injected, and each pass criterion with its verdict (see
bench/README.md). Exit codes: 0 every criterion held, 1 a guarantee was
broken (or a process died on its own, or the path did not settle in time),
2 usage error, 3 the run could not be set up (no mosquitto, not root for the
tmpfs), 130 interrupted. Every process is stopped and the tmpfs unmounted on
every way out.

The modules, from the bottom up:
    schedule    the fault kinds, the seeded schedule, each fault's figures
    watch       log counters, process liveness, waits with a deadline
    ledger      what the store and the consumer's database record
    faults      the seven faults, injected against the rig
    figures     counting a finished run, and the pass criteria
    interrupts  SIGTERM/SIGINT, held back while a run is being closed
    run         one run in one mode, start to finish (`run_mode`)
    tables      the text printed per mode (`render`)
    cli         the command: arguments, modes, exit code (`__main__` runs it)
"""
