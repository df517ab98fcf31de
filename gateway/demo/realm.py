"""The demo realm: departments, applications, users, datasets and the demo policy bundle.

Everything here is for demonstration on a developer machine.  The fixed demo passwords and
client secrets are printed by ``make run`` and written in README; ``ztgw scan passwords`` will
(rightly) flag them.  Never seed a production home with the demo realm.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ztgw.crypto.constants import PBKDF2_MIN_ITERATIONS
from ztgw.crypto.passwords import hash_password
from ztgw.policies.domain import Classification

from ..catalogue import Catalogue, Dataset, PersonalInfo
from ..identity.client_secrets import SecretHasher
from ..identity.directory import ClientRecord, Directory, UserRecord

G, IMP, C = Classification.GENERAL, Classification.IMPORTANT, Classification.CORE

POLICE, DATA_BUREAU, HRSS, MARKET = (
    "市公安局",
    "市大数据中心",
    "市人力资源和社会保障局",
    "市市场监督管理局",
)


@dataclass(frozen=True)
class DemoClient:
    client_id: str
    name: str
    secret: str | None
    organization: str
    roles: tuple[str, ...]
    scope: str
    clearance: Classification = G
    grant_types: tuple[str, ...] = ("client_credentials",)
    redirect_uris: tuple[str, ...] = ()
    note: str = ""


DEMO_CLIENTS = (
    DemoClient(
        "demo-analytics",
        "城市运行数据分析平台",
        "demo-analytics-secret-2026",
        DATA_BUREAU,
        ("population-analyst",),
        "data.read",
        IMP,
        note="reads persons with ID number, mobile, name, address and birth date masked",
    ),
    DemoClient(
        "demo-police",
        "公安户政业务系统",
        "demo-police-secret-2026",
        POLICE,
        ("population-officer",),
        "data.read",
        C,
        note="reads persons with only the mobile masked; reads enterprises",
    ),
    DemoClient(
        "demo-hrss",
        "社保业务经办系统",
        "demo-hrss-secret-2026",
        HRSS,
        ("social-security-officer",),
        "data.read",
        IMP,
        note="reads contributions with bank card and ID number masked",
    ),
    DemoClient(
        "demo-denied",
        "已停用的第三方应用",
        "demo-denied-secret-2026",
        "某科技有限公司",
        ("population-analyst", "suspended"),
        "data.read",
        G,
        note="suspended: every data request is denied (deny overrides allow)",
    ),
)

DEMO_CLIENTS = (
    *DEMO_CLIENTS,
    DemoClient(
        "demo-secops",
        "安全运营中心",
        "demo-secops-secret-2026",
        DATA_BUREAU,
        ("security-auditor",),
        "ztgw.audit.read",
        C,
        note="security operations: searches the audit trail through the admin API (/admin/v1/audit/events)",
    ),
    DemoClient(
        "demo-portal",
        "城市政务服务门户",
        None,
        DATA_BUREAU,
        (),
        "openid profile offline_access data.read",
        G,
        grant_types=("authorization_code", "refresh_token"),
        redirect_uris=("http://127.0.0.1:8090/callback", "http://localhost:8090/callback"),
        note="public client (no secret): sign users in with authorization code + PKCE S256",
    ),
)


# issue 6: applications that hold no data role and must ask — a data owner (grant) or the
# citizens themselves (consent, 授权用数)
DEMO_CLIENTS = (
    *DEMO_CLIENTS,
    DemoClient(
        "demo-research",
        "城市规划研究院数据应用",
        "demo-research-secret-2026",
        "城市规划研究院",
        (),
        "data.read",
        G,
        note="no data role: files an access request (POST /admin/v1/access-requests) that an "
             "approver of the owner department decides in the console",
    ),
    DemoClient(
        "demo-fintech",
        "惠民贷款服务（第三方）",
        "demo-fintech-secret-2026",
        "某金融科技有限公司",
        (),
        "data.read",
        G,
        note="third-party app: asks citizens for consent (POST /admin/v1/consent-requests) and "
             "then reads only the consenting citizens' own records",
    ),
)


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    password: str
    department: str
    clearance: Classification
    roles: tuple[str, ...]
    note: str = ""


# Demo-only passwords, printed by `make run` and written in README.  They are hashed with the
# minimum PBKDF2 iteration count so seeding is quick; the first login upgrades the verifier.
DEMO_USERS = (
    DemoUser("zhangwei", "张伟", "Demo-Police-2026!", POLICE, C, ("population-officer",),
             "户籍民警：核心数据权限"),
    DemoUser("lina", "李娜", "Demo-Analyst-2026!", DATA_BUREAU, IMP, ("population-analyst",),
             "数据分析员：重要数据权限"),
    DemoUser("wangfang", "王芳", "Demo-Hrss-2026!", HRSS, IMP, ("social-security-officer",),
             "社保经办员"),
    DemoUser("chenjie", "陈杰", "Demo-Citizen-2026!", "某科技有限公司", G, (),
             "外部人员：一般数据权限，无数据角色"),
)

# issue 6: data owners' approvers (two in 市公安局, whose 核心 data needs two distinct approvers)
# and a citizen whose id_number is a record of the demo population data
DEMO_USERS = (
    *DEMO_USERS,
    DemoUser("zhaolei", "赵磊", "Demo-Owner-2026!", POLICE, C, ("data-approver",),
             "市公安局数据审批人（人口数据的数据所有方）"),
    DemoUser("sunli", "孙丽", "Demo-Owner-2026!", POLICE, C, ("data-approver",),
             "市公安局第二审批人（核心数据需两人审批）"),
    DemoUser("zhouqiang", "周强", "Demo-Owner-2026!", MARKET, IMP, ("data-approver",),
             "市市场监督管理局数据审批人（企业数据的数据所有方）"),
    DemoUser("wujing", "吴静", "Demo-Owner-2026!", HRSS, IMP, ("data-approver",),
             "市人社局数据审批人（社保数据的数据所有方）"),
    DemoUser("citizen", "", "Demo-Citizen-2026!", "", G, ("citizen",),
             "公民：人口数据中的一条真实记录本人，可授权、撤销、查看谁使用了我的数据"),
)


def demo_citizen_record() -> dict[str, Any]:
    """The demo citizen: the person with the most social-security records (deterministic)."""
    from collections import Counter

    from .data import get_dataset

    counts = Counter(r["id_number"] for r in get_dataset("contributions"))
    best = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
    return next(p for p in get_dataset("persons") if p["id_number"] == best)

DEMO_DATASETS = (
    Dataset(
        dataset="population.persons",
        title="人口基础信息",
        route_prefix="/api/population/persons",
        upstream_url="",
        owner_department=POLICE,
        key_field="id_number", filter_fields=frozenset({"district", "district_code"}),
        subject_field="id_number",
        pi={"id_number": PersonalInfo.SENSITIVE, "name": PersonalInfo.PERSONAL,
            "gender": PersonalInfo.PERSONAL, "birth_date": PersonalInfo.PERSONAL,
            "ethnicity": PersonalInfo.SENSITIVE, "mobile": PersonalInfo.PERSONAL,
            "address": PersonalInfo.PERSONAL, "marital_status": PersonalInfo.PERSONAL},
        fields={
            "id_number": C,
            "name": IMP,
            "gender": G,
            "birth_date": IMP,
            "ethnicity": IMP,
            "mobile": IMP,
            "address": IMP,
            "district": G,
            "district_code": G,
            "marital_status": IMP,
            "household_type": G,
        },
    ),
    Dataset(
        dataset="enterprise.companies",
        title="企业登记信息",
        route_prefix="/api/enterprise/companies",
        upstream_url="",
        owner_department=MARKET,
        key_field="uscc", filter_fields=frozenset({"district", "district_code"}),
        pi={"legal_representative": PersonalInfo.PERSONAL,
            "legal_rep_id_number": PersonalInfo.SENSITIVE},
        fields={
            "uscc": G,
            "name": G,
            "legal_representative": G,
            "legal_rep_id_number": IMP,
            "registered_capital": G,
            "established": G,
            "industry": G,
            "status": G,
            "address": G,
            "district": G,
            "district_code": G,
            "contact_phone": IMP,
        },
    ),
    Dataset(
        dataset="social-security.contributions",
        title="社会保险缴费记录",
        route_prefix="/api/social-security/contributions",
        upstream_url="",
        owner_department=HRSS,
        key_field="record_id", filter_fields=frozenset({"id_number", "employer_uscc", "month"}),
        subject_field="id_number",
        pi={"id_number": PersonalInfo.SENSITIVE, "name": PersonalInfo.PERSONAL,
            "base_salary": PersonalInfo.SENSITIVE, "pension_personal": PersonalInfo.SENSITIVE,
            "bank_card": PersonalInfo.SENSITIVE},
        fields={
            "record_id": G,
            "month": G,
            "id_number": C,
            "name": IMP,
            "employer_uscc": G,
            "employer_name": G,
            "base_salary": IMP,
            "pension_personal": IMP,
            "pension_employer": IMP,
            "medical": IMP,
            "unemployment": IMP,
            "bank_card": C,
            "bank_name": G,
        },
    ),
)


def demo_bundle_dir() -> Path:
    return Path(str(files("ztgw.policies").joinpath("bundles/demo")))


def install_bundle(source: Path, target: Path) -> None:
    """Copy a bundle folder into place atomically (a reader sees the old or the new one)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def seed(
    directory: Directory,
    catalogue: Catalogue,
    hasher: SecretHasher,
    bundle_target: Path,
    upstream_url: str,
) -> dict[str, Any]:
    """Create (or reset) the demo realm; returns its accounts as a JSON-able dict."""
    for c in DEMO_CLIENTS:
        directory.put_client(
            ClientRecord(
                client_id=c.client_id,
                name=c.name,
                secret_hash=hasher.hash(c.secret) if c.secret else None,
                public=c.secret is None,
                redirect_uris=c.redirect_uris,
                grant_types=c.grant_types,
                scope=c.scope,
                roles=c.roles,
                department=c.organization,
                organization=c.organization,
                clearance=c.clearance,
            )
        )
    citizen = demo_citizen_record()
    for u in DEMO_USERS:
        is_citizen = "citizen" in u.roles
        directory.put_user(
            UserRecord(
                username=u.username,
                display_name=citizen["name"] if is_citizen else u.display_name,
                password_hash=hash_password(u.password, iterations=PBKDF2_MIN_ITERATIONS),
                department=u.department or None,
                clearance=u.clearance,
                roles=u.roles,
                attributes={"id_number": citizen["id_number"]} if is_citizen else {},
            )
        )
    for d in DEMO_DATASETS:
        catalogue.put(
            Dataset(
                dataset=d.dataset,
                title=d.title,
                route_prefix=d.route_prefix,
                upstream_url=upstream_url,
                owner_department=d.owner_department,
                fields=d.fields,
                key_field=d.key_field,
                filter_fields=d.filter_fields,
                pi=d.pi,
                subject_field=d.subject_field,
            )
        )
    install_bundle(demo_bundle_dir(), bundle_target)
    return {
        "clients": [
            {
                "client_id": c.client_id,
                "client_secret": c.secret,
                "name": c.name,
                "organization": c.organization,
                "roles": list(c.roles),
                "scope": c.scope,
                "grant_types": list(c.grant_types),
                "redirect_uris": list(c.redirect_uris),
                "public": c.secret is None,
                "note": c.note,
            }
            for c in DEMO_CLIENTS
        ],
        "users": [
            {
                "username": u.username,
                "password": u.password,
                "display_name": citizen["name"] if "citizen" in u.roles else u.display_name,
                "department": u.department,
                "clearance": u.clearance.label,
                "roles": list(u.roles),
                "note": u.note,
            }
            for u in DEMO_USERS
        ],
        "routes": [
            {
                "dataset": d.dataset,
                "title": d.title,
                "prefix": d.route_prefix,
                "owner": d.owner_department,
                "classification": d.classification.label,
                "upstream": upstream_url,
            }
            for d in DEMO_DATASETS
        ],
        "policy_bundle": "demo",
    }
