// Signing and ownership on an endpoint card (issue 23): the scheme and the
// public key, switching scheme (with the grace window), the verification
// state and "Verify again".

import { api, canWrite, state } from "./api.js";
import { absolute, confirmDialog, h, note, shortUrl } from "./dom.js";
import { showSecret } from "./endpoints.js";

const ED25519 = "SIGNING_SCHEME_ED25519";
const HMAC = "SIGNING_SCHEME_HMAC_SHA256";
const PENDING = "VERIFICATION_STATUS_PENDING";
const VERIFIED = "VERIFICATION_STATUS_VERIFIED";

export function isEd25519(config) {
  return config.signing_scheme === ED25519;
}

export function awaitingVerification(config) {
  return config.verification_status === PENDING;
}

// The card's signing block: scheme, public key (ed25519), grace, verification.
export function signingBlock(config, slot) {
  const rows = [
    h("span", {}, "Signing ", h("strong", { class: "scheme" }, isEd25519(config) ? "ed25519 (v1a)" : "HMAC-SHA256 (v1)")),
  ];
  if (isEd25519(config)) {
    rows.push(h("span", {}, "Public key ", h("span", { class: "mono public-key", title: config.public_key }, config.public_key)));
    rows.push(h("span", {}, "Key id ", h("span", { class: "mono" }, config.public_key_id)));
  }
  if (config.previous_key_expires_at) {
    rows.push(h("span", { class: "grace" }, `The previous ${config.previous_public_key ? "key" : "secret"} also signs until ${absolute(config.previous_key_expires_at)}`));
  }
  return h("div", { class: "endpoint-signing muted" }, ...rows, verificationLine(config));
}

function verificationLine(config) {
  const status = config.verification_status;
  if (status !== PENDING && status !== VERIFIED) return null;
  const label = status === PENDING ? "Ownership not verified: deliveries wait" : "Ownership verified";
  const parts = [h("span", { class: `verification ${status === PENDING ? "warn" : "ok"}` }, label)];
  if (status === VERIFIED && config.verified_at) parts.push(h("span", {}, ` ${absolute(config.verified_at)}`));
  if (config.verification_error) parts.push(h("span", { class: "verification-error" }, ` (last try: ${config.verification_error})`));
  return h("span", { class: "verification-line" }, ...parts);
}

// The card's actions: verify again, switch scheme.
export function signingActions(config, slot, action) {
  if (!canWrite()) return [];
  const out = [];
  if (config.verification_status === PENDING || config.verification_status === VERIFIED) {
    out.push(action("Verify again", "refresh", verifyAgain, "verify"));
  }
  out.push(action(isEd25519(config) ? "Switch to HMAC" : "Switch to ed25519", "key", switchScheme, "scheme"));
  return out;
}

export async function verifyAgain(config, slot) {
  note(slot, "Sending the ownership challenge…", "muted");
  try {
    const resp = await api("POST", `/webhooks/configs/${config.id}:verify`, {});
    await state.refreshEndpoints();
    const again = document.getElementById(`note-${config.id}`) || slot;
    if (resp.verified) note(again, "Verified: the endpoint echoed the challenge. Waiting deliveries are on their way.", "ok");
    else note(again, `Not verified: ${resp.error}`, "bad");
  } catch (err) {
    note(slot, err.message, "bad");
  }
}

export async function switchScheme(config, slot) {
  const to = isEd25519(config) ? HMAC : ED25519;
  const ok = await confirmDialog(
    to === ED25519 ? "Sign with ed25519?" : "Sign with an HMAC secret?",
    to === ED25519
      ? `${shortUrl(config.url)} gets a key pair held by the service; receivers verify v1a signatures with its public key or your organisation's key set. The current secret keeps signing alongside it for the grace period.`
      : `${shortUrl(config.url)} gets a new HMAC secret, shown once. The current ed25519 key keeps signing alongside it for the grace period.`,
    to === ED25519 ? "Switch to ed25519" : "Switch to HMAC",
  );
  if (!ok) return;
  try {
    const resp = await api("PUT", "/webhooks/configs", {
      id: config.id,
      url: config.url,
      event_types: config.event_types,
      signing_scheme: to,
    });
    await state.refreshEndpoints();
    const again = document.getElementById(`note-${config.id}`) || slot;
    if (resp.secret) {
      showSecret(resp.secret, `New signing secret for ${shortUrl(config.url)}.`);
    } else {
      note(again, `Signing with ed25519. Public key ${resp.config.public_key}.`, "ok");
    }
  } catch (err) {
    note(slot, err.message, "bad");
  }
}
