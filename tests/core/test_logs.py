import json
import logging

from wenzheng.core import logs


def test_a_log_file_rotates_and_keeps_a_bounded_number_of_old_ones(tmp_path):
    path = tmp_path / "logs" / "classify.log"
    logs.setup("INFO", file=path, max_bytes=2_000)
    try:
        for i in range(500):
            logging.getLogger("wenzheng.test").info("第%d条：路灯不亮", i, extra={"stage": "classify"})
    finally:
        logs.setup("INFO")  # back to stderr, closing the file
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["classify.log", *[f"classify.log.{i}" for i in range(1, logs.BACKUPS + 1)]]
    assert all(p.stat().st_size <= 2_200 for p in path.parent.iterdir())
    last = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    assert last["msg"] == "第499条：路灯不亮" and last["stage"] == "classify"  # UTF-8, not \\u escapes
