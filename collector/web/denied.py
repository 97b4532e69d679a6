"""The page a person gets when the gate refuses them: what happened and what to do, Vietnamese first.

Self-contained (no template, no judge): the gate answers before any route runs.
"""

from __future__ import annotations

from html import escape

TEXT = {
    401: ("Cần đăng nhập", "Trang này dành cho cán bộ vận hành. Hãy mở nó qua cổng đăng nhập (SSO) của đơn vị, "
                          "hoặc dùng mã truy cập của người vận hành.",
          "Sign-in required", "This page is for operators. Open it through your organisation's sign-in (SSO) "
                              "portal, or use an operator token."),
    403: ("Không có quyền", "Tài khoản của bạn không được xem trang này. Hãy nhờ quản trị viên cấp quyền.",
          "Not allowed", "Your account may not see this page. Ask an administrator for a role."),
    503: ("Chưa sẵn sàng", "Hệ thống đang khởi động hoặc không kiểm tra được quyền lúc này. Hãy thử lại sau ít giây.",
          "Not ready", "The collector is starting or cannot check credentials right now. Retry in a few seconds."),
}
PUBLIC_LINK = '<p><a href="/public">Số liệu công khai · Public figures</a></p>'
LOGIN_LINK = '<p><a href="/login">Đăng nhập bằng mã truy cập · Sign in with an operator token</a></p>'


def denied_html(status: int, detail: str, public_view: bool) -> str:
    vi_title, vi_text, en_title, en_text = TEXT.get(status, TEXT[403])
    return ("<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{vi_title} · commune-monitor</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>"
            f"<body><main class=\"wrap\"><h1>{vi_title}</h1><p>{vi_text}</p>"
            f"<h2 lang=\"en\">{en_title}</h2><p lang=\"en\">{en_text}</p>"
            f"<p><small data-testid=\"denied-detail\">{escape(detail)}</small></p>"
            f"{LOGIN_LINK if status == 401 else ''}{PUBLIC_LINK if public_view else ''}</main></body></html>")
