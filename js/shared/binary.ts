// Binary traits: bytes of a DataView / buffer, image MIME sniffing, object URLs, signatures.
import type { Bindings } from "./dom";
import type { Binary, BlobEntry } from "./types";

/** Bytes of a binary trait value (DataView from ipywidgets, or a buffer). */
export function toBytes(value: Binary | undefined): Uint8Array | null {
  if (!value) return null;
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return null;
}

/** The MIME type of encoded image bytes from their magic number. */
export function sniffMime(bytes: Uint8Array): string {
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return "image/png";
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return "image/jpeg";
  if (bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50) {
    return "image/webp";
  }
  return "application/octet-stream";
}

/** An object URL for image bytes; the caller revokes it. */
export function objectUrl(bytes: Uint8Array, mime?: string): string {
  const copy = bytes.slice(); // a plain ArrayBuffer-backed copy (Blob needs no shared memory)
  return URL.createObjectURL(new Blob([copy.buffer], { type: mime || sniffMime(bytes) }));
}

/** A cheap content signature (FNV-1a) so unchanged thumbnails keep their URL and element. */
export function signature(bytes: Uint8Array): string {
  let hash = 0x811c9dc5;
  const step = Math.max(1, Math.floor(bytes.length / 512));
  for (let i = 0; i < bytes.length; i += step) {
    hash ^= bytes[i];
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `${bytes.length}:${hash.toString(16)}`;
}

/** Object URLs cut out of one blob trait; all revoked when the blob changes. */
export class BlobUrls {
  private urls: string[] = [];

  constructor(bindings: Bindings) {
    bindings.add(() => this.clear(0));
  }

  /** Revoke every URL handed out; later, by default, so images still decoding can finish. */
  clear(delayMs = 5000): void {
    const old = this.urls.splice(0);
    if (!old.length) return;
    const revoke = (): void => old.forEach((url) => URL.revokeObjectURL(url));
    if (delayMs > 0) setTimeout(revoke, delayMs);
    else revoke();
  }

  url(blob: Uint8Array | null, entry: BlobEntry | null | undefined): string | null {
    if (!blob || !entry || entry.offset + entry.length > blob.length) return null;
    const url = objectUrl(blob.subarray(entry.offset, entry.offset + entry.length), entry.mime);
    this.urls.push(url);
    return url;
  }
}
