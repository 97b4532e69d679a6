"""A realistic, deterministic inventory for tests, demos and benchmarks.

3,321 communes and wards over the 34 provinces by default, spread like the
real ones (the approximate counts below sum to 3,321), with Vietnamese names
carrying their diacritics ("Phường Hòa Bình", "Xã Tân Phú"), ids derived from
them, and the links, devices and power each center is expected to have. The
same seed always gives the same inventory; ``count`` scales it (10,000 for the
benchmark) keeping each province's share.
"""

from __future__ import annotations

import random
import unicodedata

from commune_collector.provinces import provinces
from commune_collector.sites import Site

# communes and wards per province after the July 2025 reorganisation (approximate; sums to 3,321)
COMMUNES_PER_PROVINCE = {
    "ha-noi": 126, "hue": 40, "hai-phong": 114, "da-nang": 94, "ho-chi-minh": 168, "can-tho": 103,
    "lai-chau": 38, "dien-bien": 45, "son-la": 75, "lang-son": 65, "quang-ninh": 54, "thanh-hoa": 166,
    "nghe-an": 130, "ha-tinh": 69, "cao-bang": 56, "tuyen-quang": 124, "lao-cai": 99, "thai-nguyen": 92,
    "phu-tho": 148, "bac-ninh": 99, "hung-yen": 104, "ninh-binh": 129, "quang-tri": 78, "quang-ngai": 96,
    "gia-lai": 135, "khanh-hoa": 65, "lam-dong": 124, "dak-lak": 102, "dong-nai": 95, "tay-ninh": 96,
    "vinh-long": 124, "dong-thap": 102, "ca-mau": 64, "an-giang": 102,
}
WARD_SHARE = {"city": 0.45, "province": 0.15}
SYLLABLES = (
    "An", "Bình", "Phú", "Hòa", "Tân", "Thạnh", "Long", "Hưng", "Phước", "Mỹ", "Thành", "Quang", "Trung",
    "Hiệp", "Lộc", "Thuận", "Đông", "Tây", "Nam", "Bắc", "Hải", "Sơn", "Thủy", "Lâm", "Xuân", "Đức", "Minh",
    "Nghĩa", "Tiến", "Thắng", "Lợi", "Vĩnh", "Khánh", "Định", "Hà", "Cát", "Kim", "Ngọc", "Hồng", "Lạc", "Yên",
    "Thịnh", "Phong", "Vân", "Hương", "Gia", "Cẩm", "Điền", "Thới", "Quý", "Đại", "Tam", "Nhơn", "Tịnh", "Hội",
    "Trà", "Cao", "Lương", "Châu", "Diên", "Ninh", "Quảng", "Kỳ", "Đồng", "Liên", "Mai", "Tùng", "Bảo", "Chánh",
    "Việt", "Hợp", "Dương", "Lập", "Tường", "Văn", "Hoàng", "Thái", "Phúc", "Trường", "Thọ", "Cường", "Thống",
)
DEVICE_POOL = ("camera", "printer", "kiosk", "queue-display", "vc-terminal", "scanner", "access-point")


def slugify(text: str) -> str:
    """``'Phường Hòa Bình'`` -> ``'phuong-hoa-binh'`` (ASCII, for ids and URLs)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join("".join(c if c.isalnum() else " " for c in ascii_text.lower()).split())


def scaled_counts(total: int) -> dict[str, int]:
    """Each province's share of ``total`` (largest remainder, so they sum exactly)."""
    base = sum(COMMUNES_PER_PROVINCE.values())
    exact = {slug: total * n / base for slug, n in COMMUNES_PER_PROVINCE.items()}
    counts = {slug: int(x) for slug, x in exact.items()}
    for slug in sorted(exact, key=lambda s: exact[s] - counts[s], reverse=True)[: total - sum(counts.values())]:
        counts[slug] += 1
    return counts


def _names(rng: random.Random, n: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = " ".join(rng.sample(SYLLABLES, 3 if rng.random() < 0.08 else 2))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _expected(rng: random.Random) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    links = ("fiber", "lte") if rng.random() < 0.85 else ("fiber",)
    devices = ("router", "switch", *sorted(rng.sample(DEVICE_POOL, rng.randint(2, 5))))
    power = ("ups",) if rng.random() < 0.8 else ()
    return links, devices, power


def generate_sites(count: int = 3321, seed: int = 1) -> list[Site]:
    """``count`` sites over the 34 provinces, the same for the same seed."""
    rng = random.Random(seed)
    sites: list[Site] = []
    for slug, n in scaled_counts(count).items():
        province = provinces()[slug]
        ids: set[str] = set()
        for name in _names(rng, n):
            kind = "Phường" if rng.random() < WARD_SHARE[province.kind] else "Xã"
            commune = f"{kind} {name}"
            site_id = f"{slug}-{slugify(name)}"
            suffix = 2
            while site_id in ids:
                site_id, suffix = f"{slug}-{slugify(name)}-{suffix}", suffix + 1
            ids.add(site_id)
            links, devices, power = _expected(rng)
            sites.append(Site(site_id, f"Trung tâm Phục vụ hành chính công {commune}", slug, commune,
                              links, devices, power))
    return sorted(sites, key=lambda s: s.id)
