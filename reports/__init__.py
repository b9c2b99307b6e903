"""Daily and monthly CEMS reports (日报 / 月报): HTML with charts, PDF and XLSX.

`query` reads the stored rows of a period and scope from PostgreSQL, `tables` turns them into
the report's tables with the pure HJ 75 statistics of `stackwatch.report_stats`, and `charts`,
`html`, `pdf` and `xlsx` render them. `generate.write_reports` ties it together for the CLI
(`stackwatch report daily|monthly`). What each table means: docs/reports.md.
"""
