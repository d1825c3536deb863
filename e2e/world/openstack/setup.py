#!/usr/bin/python3
"""Identity registration and seeding of the local world's OpenStack, through the REST APIs.

  setup.py register PASSWORD           service users, roles, Heat's stack domain, catalog
  setup.py seed PASSWORD STATE_DIR INTERNAL_HOST
                                       project, user, application credential, image, flavors,
                                       quotas, the catalog's internal endpoints on INTERNAL_HOST
                                       (where world-forward reaches the APIs from the real node's
                                       pods), and STATE_DIR/clouds.yaml

Both are idempotent: everything is looked up by name before it is created. Runs under Debian's
/usr/bin/python3, which has keystoneauth1 from the OpenStack packages.
"""
import json
import os
import sys

from keystoneauth1 import session
from keystoneauth1.identity import v3

KEYSTONE = "http://127.0.0.1:5000/v3"
REGION = "RegionOne"
PROJECT = "autoscaler"          # the project whose servers become nodes
USER = "autoscaler"             # the user the autoscaler's application credential belongs to
APP_CRED = "world-autoscaler"
IMAGE = "world-node-image"
# name: (vcpus, ram MiB, disk GiB, extra specs)
FLAVORS = {
    "m1.small": (2, 4096, 20, {}),
    "m1.medium": (4, 8192, 40, {}),
    "m1.large": (8, 16384, 80, {}),
    # A GPU flavor: one a100 through PCI passthrough (the alias is defined in nova.conf).
    "g1.large": (8, 32768, 80, {"pci_passthrough:alias": "a100:1"}),
}
# Generous defaults; tests lower them to provoke quota errors and restore them afterwards.
QUOTAS = {"instances": 50, "cores": 400, "ram": 1024000}


TIMEOUT = 60  # seconds per request: a hung API fails the step instead of stalling it


def admin_session(password):
    return session.Session(auth=v3.Password(
        auth_url=KEYSTONE, username="admin", password=password, project_name="admin",
        user_domain_id="default", project_domain_id="default"), timeout=TIMEOUT)


class API:
    def __init__(self, sess, service_type, microversion=None):
        self.sess, self.filt = sess, {"service_type": service_type, "interface": "public",
                                      "region_name": REGION}
        self.headers = {}
        if microversion:
            self.headers = {"OpenStack-API-Version": "compute " + microversion}

    def get(self, path, **kw):
        return self.sess.get(path, endpoint_filter=self.filt, headers=self.headers, **kw).json()

    def post(self, path, body, ok=(200, 201, 202, 204)):
        r = self.sess.post(path, json=body, endpoint_filter=self.filt, headers=self.headers,
                           raise_exc=False)
        if r.status_code not in ok:
            raise SystemExit(f"POST {path} -> {r.status_code}: {r.text}")
        return r.json() if r.text else {}

    def patch(self, path, body):
        r = self.sess.patch(path, json=body, endpoint_filter=self.filt, headers=self.headers,
                            raise_exc=False)
        if r.status_code >= 300:
            raise SystemExit(f"PATCH {path} -> {r.status_code}: {r.text}")
        return r.json() if r.text else {}

    def put(self, path, body=None, data=None, headers=None):
        h = dict(self.headers, **(headers or {}))
        r = self.sess.put(path, json=body, data=data, endpoint_filter=self.filt, headers=h,
                          raise_exc=False)
        if r.status_code >= 300:
            raise SystemExit(f"PUT {path} -> {r.status_code}: {r.text}")
        return r


def by_name(items, name):
    for item in items:
        if item.get("name") == name:
            return item
    return None


def ensure(ks, collection, name, body, query=""):
    found = by_name(ks.get(f"/{collection}?name={name}{query}")[collection], name)
    if found:
        return found
    return ks.post(f"/{collection}", {collection[:-1]: body})[collection[:-1]]


def grant(ks, role_id, user_id, project_id=None, domain_id=None):
    scope = f"projects/{project_id}" if project_id else f"domains/{domain_id}"
    ks.put(f"/{scope}/users/{user_id}/roles/{role_id}")


def register(password):
    ks = API(admin_session(password), "identity")
    service_project = ensure(ks, "projects", "service", {"name": "service", "domain_id": "default"})
    roles = {r["name"]: r["id"] for r in ks.get("/roles")["roles"]}
    for name in ("heat_stack_owner", "heat_stack_user", "member", "reader"):
        if name not in roles:
            roles[name] = ks.post("/roles", {"role": {"name": name}})["role"]["id"]
    for name in ("nova", "placement", "glance", "heat", "neutron"):
        user = ensure(ks, "users", name, {"name": name, "domain_id": "default", "password": password},
                      "&domain_id=default")
        grant(ks, roles["admin"], user["id"], project_id=service_project["id"])
    # Heat's domain for the users and projects it creates for stacks.
    heat_domain = ensure(ks, "domains", "heat", {"name": "heat", "description": "Heat stack users"})
    heat_admin = ensure(ks, "users", "heat_domain_admin",
                        {"name": "heat_domain_admin", "domain_id": heat_domain["id"], "password": password},
                        f"&domain_id={heat_domain['id']}")
    grant(ks, roles["admin"], heat_admin["id"], domain_id=heat_domain["id"])
    admin_user = by_name(ks.get("/users?name=admin")["users"], "admin")
    admin_project = by_name(ks.get("/projects?name=admin")["projects"], "admin")
    grant(ks, roles["heat_stack_owner"], admin_user["id"], project_id=admin_project["id"])
    catalog = [("nova", "compute", "http://127.0.0.1:8774/v2.1"),
               ("placement", "placement", "http://127.0.0.1:8778"),
               ("glance", "image", "http://127.0.0.1:9292"),
               ("heat", "orchestration", "http://127.0.0.1:8004/v1/%(project_id)s"),
               ("neutron", "network", "http://127.0.0.1:9696")]
    for name, stype, url in catalog:
        services = ks.get(f"/services?type={stype}")["services"]
        svc = services[0] if services else ks.post("/services", {"service": {"name": name, "type": stype}})["service"]
        have = {e["interface"] for e in ks.get(f"/endpoints?service_id={svc['id']}")["endpoints"]}
        for iface in ("public", "internal", "admin"):
            if iface not in have:
                ks.post("/endpoints", {"endpoint": {"service_id": svc["id"], "url": url,
                                                    "interface": iface, "region_id": REGION}})
    print("keystone: service users, heat domain and catalog registered")


def internal_endpoints(ks, host):
    """Points each service's internal endpoint (Identity's aside: the services validate tokens
    through it) at host, the address world-forward listens on: the real node's pods reach the
    APIs there, as through a cloud's internal API network. The services themselves use the
    public endpoints (their configurations say so)."""
    services = {s["id"]: s for s in ks.get("/services")["services"]}
    endpoints = ks.get("/endpoints")["endpoints"]
    public = {e["service_id"]: e["url"] for e in endpoints if e["interface"] == "public"}
    for e in endpoints:
        svc = services.get(e["service_id"], {})
        if e["interface"] != "internal" or svc.get("type") == "identity" or e["service_id"] not in public:
            continue
        want = public[e["service_id"]].replace("//127.0.0.1:", f"//{host}:")
        if e["url"] != want:
            ks.patch(f"/endpoints/{e['id']}", {"endpoint": {"url": want}})


def seed(password, state_dir, internal_host):
    sess = admin_session(password)
    ks = API(sess, "identity")
    internal_endpoints(ks, internal_host)
    roles = {r["name"]: r["id"] for r in ks.get("/roles")["roles"]}
    project = ensure(ks, "projects", PROJECT, {"name": PROJECT, "domain_id": "default",
                                               "description": "nodes of the world's cluster"})
    user = ensure(ks, "users", USER, {"name": USER, "domain_id": "default", "password": password,
                                      "default_project_id": project["id"]}, "&domain_id=default")
    for role in ("member", "reader", "heat_stack_owner"):
        grant(ks, roles[role], user["id"], project_id=project["id"])

    # The application credential is created by the user itself, scoped to its project: that is
    # how operators hand a cloud to an autoscaler. Its secret is shown only once, so it is kept.
    cred_file = os.path.join(state_dir, "app-credential.json")
    user_sess = session.Session(auth=v3.Password(
        auth_url=KEYSTONE, username=USER, password=password, project_name=PROJECT,
        user_domain_id="default", project_domain_id="default"), timeout=TIMEOUT)
    uks = API(user_sess, "identity")
    existing = by_name(uks.get(f"/users/{user['id']}/application_credentials")["application_credentials"], APP_CRED)
    cred = None
    if existing and os.path.exists(cred_file):
        with open(cred_file) as f:
            cred = json.load(f)
        if cred.get("id") != existing["id"]:
            cred = None
    if cred is None:
        if existing:
            uks.sess.delete(f"/users/{user['id']}/application_credentials/{existing['id']}",
                            endpoint_filter=uks.filt)
        # unrestricted: Heat creates a trust for each stack it manages, and Keystone refuses to
        # create trusts with a restricted application credential.
        made = uks.post(f"/users/{user['id']}/application_credentials",
                        {"application_credential": {"name": APP_CRED, "unrestricted": True,
                                                    "description": "cluster-autoscaler provider of the local world"}})
        cred = {"id": made["application_credential"]["id"], "secret": made["application_credential"]["secret"]}
        with open(cred_file, "w") as f:
            json.dump(cred, f)
        os.chmod(cred_file, 0o600)

    glance = API(sess, "image")
    image = by_name(glance.get(f"/v2/images?name={IMAGE}")["images"], IMAGE)
    if image is None:
        image = glance.post("/v2/images", {"name": IMAGE, "disk_format": "raw", "container_format": "bare",
                                           "visibility": "public", "os_distro": "debian", "architecture": "x86_64"})
    if image.get("status") != "active":
        # The fake virt driver never reads the disk; a few bytes make the image active.
        glance.put(f"/v2/images/{image['id']}/file", data=b"world-node-image: not a real disk",
                   headers={"Content-Type": "application/octet-stream"})

    nova = API(sess, "compute", "2.79")
    flavors = {f["name"]: f for f in nova.get("/flavors/detail?is_public=None")["flavors"]}
    for name, (vcpus, ram, disk, specs) in FLAVORS.items():
        flavor = flavors.get(name) or nova.post("/flavors", {"flavor": {
            "name": name, "vcpus": vcpus, "ram": ram, "disk": disk}})["flavor"]
        if specs:
            nova.post(f"/flavors/{flavor['id']}/os-extra_specs", {"extra_specs": specs})
    nova.put(f"/os-quota-sets/{project['id']}", {"quota_set": QUOTAS})

    clouds = {"clouds": {
        "world-admin": {"auth": {"auth_url": KEYSTONE, "username": "admin", "password": password,
                                 "project_name": "admin", "user_domain_name": "Default",
                                 "project_domain_name": "Default"},
                        "region_name": REGION, "interface": "public", "identity_api_version": 3},
        # The project's user with its password: what an operator uses to create Heat stacks
        # (Keystone refuses trusts to application-credential tokens, and Heat makes one per stack).
        "world-operator": {"auth": {"auth_url": KEYSTONE, "username": USER, "password": password,
                                    "project_name": PROJECT, "user_domain_name": "Default",
                                    "project_domain_name": "Default"},
                           "region_name": REGION, "interface": "public", "identity_api_version": 3},
        "world": {"auth_type": "v3applicationcredential",
                  "auth": {"auth_url": KEYSTONE, "application_credential_id": cred["id"],
                           "application_credential_secret": cred["secret"]},
                  "region_name": REGION, "interface": "public", "identity_api_version": 3},
        # The same credential as the real node's pods use it: through world-forward, with the
        # catalog's internal endpoints.
        "world-internal": {"auth_type": "v3applicationcredential",
                           "auth": {"auth_url": f"http://{internal_host}:5000/v3", "application_credential_id": cred["id"],
                                    "application_credential_secret": cred["secret"]},
                           "region_name": REGION, "interface": "internal", "identity_api_version": 3},
    }}
    path = os.path.join(state_dir, "clouds.yaml")
    with open(path, "w") as f:
        # JSON is YAML; no yaml module needed.
        json.dump(clouds, f, indent=2)
    os.chmod(path, 0o600)
    info = {"project_id": project["id"], "image_id": image["id"],
            "flavors": {n: f["id"] for n, f in
                        ((f["name"], f) for f in nova.get("/flavors/detail?is_public=None")["flavors"])}}
    with open(os.path.join(state_dir, "seed.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(f"seed: project {PROJECT}, application credential {APP_CRED}, image {IMAGE}, "
          f"flavors {', '.join(FLAVORS)}; clouds.yaml at {path}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("register", "seed"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "register":
        register(sys.argv[2])
    else:
        seed(sys.argv[2], sys.argv[3], sys.argv[4])
