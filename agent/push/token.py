"""The site token, read from its file (or environment variable) at every send."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from commune_agent.push.errors import PushSetupError

log = logging.getLogger("commune_agent.push")


class TokenSource:
    """The site token, read at every send so a rotated file is picked up without a restart."""

    def __init__(self, file: Path | None = None, env: str | None = None):
        if file is None and env is None:
            raise PushSetupError("collector: set token_file (or token_env) to the token issued for this site")
        self.file = file
        self.env = env
        self.read()  # fail at start, not at the first push
        if file is not None and os.stat(file).st_mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("token file %s is readable by group or others; chmod 600 it", file)

    def read(self) -> str:
        if self.file is not None:
            try:
                token = self.file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise PushSetupError(f"collector.token_file {self.file}: cannot read: {exc}") from None
            where = f"collector.token_file {self.file}"
        else:
            token = os.environ.get(str(self.env), "").strip()
            where = f"environment variable {self.env} (collector.token_env)"
        if not token:
            raise PushSetupError(f"{where} is empty")
        return token
