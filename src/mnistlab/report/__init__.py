"""Answers from recorded runs: comparisons with honest statistics, and the lab report in HTML
and Markdown (rebuilt from run directories alone).

    compare.py    group runs by configuration, the comparison table
    stats.py      spread, intervals and tests over repeated runs
    findings.py   plain-word diagnostics and the paragraph comparing configurations
    sections.py   the optimiser and model-complexity sections
    document.py   the report as plain blocks
    html.py       blocks -> one self-contained HTML file
    markdown.py   blocks -> report.md with its PNGs
    write.py      `write_report`: the lab report
"""
