"""Sweep cases for the foundation tasks."""

CASES = {
    "env.show": [
        ["env.show"],
        ["env.show", "--all"],
        ["env.show", "--json", "--all"],
        ["env.show", "--profile", "{profile}", "--all"],
        ["env.show", "--chain", "host", "--all"],
    ],
    "env.check": [["env.check", "l0"], ["env.check", "l0", "--profile", "{profile}"]],
    "clean": [["clean", "--dry-run"], ["clean"]],
    "up": [["up", "--dry-run"], ["up", "--dry-run", "--profile", "{profile}"]],
}
CASES["rehearse"] = [["rehearse"]]
CASES["doppler.forget"] = [["doppler.forget", "--dry-run"], ["doppler.forget"]]
