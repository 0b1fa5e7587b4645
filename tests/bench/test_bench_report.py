"""`medrl bench report` writes one section per CPU kind into the benchmarks page and leaves the rest of it alone."""

import json

from bench import prefix, report


def _report(result: dict, capability: str) -> dict:
    m = report.machine()
    return {
        "machine": {**m, "torch_cpu_capability": capability},
        "benches": [
            {
                "command": "medrl bench prefix --no-sweep --json",
                "module": "prefix",
                "seconds": 1.0,
                "result": result,
            },
            {
                "command": "medrl bench head --json",
                "module": "head",
                "seconds": 0.5,
                "error": "medrl: error: boom",
            },
        ],
    }


def test_machine_says_what_the_figures_depend_on():
    m = report.machine()
    assert m["cpu"] and m["cpus"] >= 1 and m["threads"] >= 1
    assert m["torch_cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "NO AVX", "SVE256")
    assert m["versions"]["torch"] and m["versions"]["trl"]
    assert set(m["flags"]) <= set(report.FLAGS)


def test_sections_replace_their_own_kind_and_keep_the_prose(tmp_path):
    # a real (tiny) measurement; the VLM row is left out (it is about the page, not the numbers)
    result = prefix.run(p=64, s=8, g=2, repeats=1, sweep=False, vlm=False, threads=1)
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nHand-written notes stay.\n")
    report.write(_report(result, "AVX512"), page)
    report.write(_report(result, "AVX2"), page)
    report.write(_report(result, "AVX512"), page)  # again: replaces its section, adds none
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written notes stay.\n")
    assert text.count("bench-report") == 4 and text.count("## Generated reports") == 1
    assert ": AVX512 kernels" in text and ": AVX2 kernels" in text
    assert prefix.table(result).strip().splitlines()[0] in text  # the bench's own table
    assert json.dumps(result, indent=1).splitlines()[1] in text  # and its JSON
    assert "Failed: medrl: error: boom" in text
