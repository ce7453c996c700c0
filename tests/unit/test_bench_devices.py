"""``chatmq.bench.bench_devices``: its report table. The rows themselves need a running chatmq (the command
runs them; speed is measured there, never in tests)."""

from __future__ import annotations

from chatmq.bench.bench_devices import DeviceRow, markdown_table


def test_the_table_has_a_line_per_row_with_its_figures() -> None:
    rows = [DeviceRow("command", 20, 8.3, 339, 0, 40.9, 460.8, 1014.3),
            DeviceRow("shadow", 20, 8.1, 541, 2, 66.2, 204.3, None)]
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| command round trip")
    assert "| 40.9 | 460.8 | 1014.3 | 339 | 0 |" in lines[2]
    assert lines[3].startswith("| shadow update")
    assert "| 66.2 | 204.3 | None | 541 | 2 |" in lines[3]
