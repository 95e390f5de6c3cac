"""The project's measurements: how fast dynamic appearance is, whether the paper's claims hold on a
set built to test them, and what reproducing the paper's tables would cost. One command each:

    python bench.py              # speed and cost as ratios measured in one run (experiments/speed.py):
                                 # PWTP's time and multiply-adds against the backbone's, one MGDA step
                                 # against one constant-lambda step of train.py, DA against optical flow
                                 # (RAFT-small, Horn-Schunck), the synthetic loader against the step.
                                 # Ratios, not seconds: they carry over between machines. -> bench.json
    python bench.py --quick      # the same rows at tiny sizes, a few seconds (what the test suite runs)
    python bench.py claims       # the paper's claims, each row a train.py run on synthetic sets whose
                                 # test list crosses every class with every background
                                 # (experiments/claims.py): (a) DA beats RGB, (b) also on videos whose
                                 # background belongs to another class, with the dose-response over
                                 # lambda, (c) joint beats separate training, (d) MGDA >= constant
                                 # lambda, (e) Fig. 3; 10 seeds. -> claims.json + .png
    python bench.py claims --table claims.json     # its tables and verdicts again, no training
    python bench.py loader       # the loader per worker against raw decoding of the same frames, plain,
                                 # prepared and as frame folders (experiments/loader.py); --data-root DIR
    python bench.py reproduce    # REPRODUCE.md's tables: each paper table as train.py commands, with the
                                 # cost of each run estimated from a measured step (experiments/reproduce.py)

`python bench.py COMMAND --help` lists a command's flags; the command comes first. The statistics
the claims are decided by are in experiments/stats.py. What the commands measured on this project's
machines is in docs/SPEED.md and docs/CLAIMS.md.
"""
import sys

from experiments import claims, loader, reproduce, speed

COMMANDS = {"claims": claims.main, "loader": loader.main, "reproduce": reproduce.main}


def main(argv=None):
    """Dispatch on the first argument: a command of COMMANDS, else the speed table's flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
    if argv[:1] == ["bench"]:                   # the speed table's own name, as the default command
        argv = argv[1:]
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return speed.main(argv)


if __name__ == "__main__":
    main()
