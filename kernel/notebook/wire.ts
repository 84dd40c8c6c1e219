/**
 * Jupyter's wire format: [identities…, "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers…],
 * signed with HMAC over the four JSON parts. tslab's own codec is private to its module, so the server
 * speaks it through this one.
 */
import { createHmac, randomUUID } from 'crypto';
import { PROTOCOL_VERSION } from './protocol';

const DELIMITER = Buffer.from('<IDS|MSG>');

export interface Header {
  msg_id: string;
  msg_type: string;
  session: string;
  username: string;
  date: string;
  version: string;
}

export interface Message<C = Record<string, unknown>> {
  identities: Buffer[];
  header: Header;
  parent_header: Partial<Header>;
  metadata: Record<string, unknown>;
  content: C;
}

export class Wire {
  /** The kernel's session id, in the header of everything it sends. */
  readonly session = randomUUID();
  /** The HMAC's hash, e.g. "sha256". */
  private readonly digest: string;

  /** `scheme` as the connection file names it ("hmac-sha256"); an empty key means unsigned messages. */
  constructor(
    private readonly key: string,
    scheme = 'hmac-sha256',
  ) {
    this.digest = scheme.replace(/^hmac-/, '');
  }

  private sign(parts: (string | Buffer)[]): string {
    if (!this.key) return '';
    const hmac = createHmac(this.digest, this.key);
    for (const p of parts) hmac.update(p);
    return hmac.digest('hex');
  }

  decode(frames: Buffer[]): Message {
    const at = frames.findIndex((f) => f.equals(DELIMITER));
    if (at < 0) throw new Error('message without the <IDS|MSG> delimiter');
    const [signature, ...parts] = frames.slice(at + 1);
    const json = parts.slice(0, 4);
    if (json.length < 4) throw new Error('message with fewer than four parts');
    if (this.key && signature.toString() !== this.sign(json)) throw new Error('message with a bad signature');
    const [header, parent_header, metadata, content] = json.map((p) => JSON.parse(p.toString()));
    return { identities: frames.slice(0, at), header, parent_header, metadata, content };
  }

  /** A message answering or caused by `parent`; identities route a shell reply back to its client. */
  encode(msgType: string, content: unknown, parent: Message, identities: Buffer[] = []): Buffer[] {
    const header: Header = {
      msg_id: randomUUID(),
      msg_type: msgType,
      session: this.session,
      username: parent.header.username ?? 'kernel',
      date: new Date().toISOString(),
      version: PROTOCOL_VERSION,
    };
    const json = [header, parent.header, {}, content].map((p) => JSON.stringify(p));
    return [...identities, DELIMITER, Buffer.from(this.sign(json)), ...json.map((p) => Buffer.from(p))];
  }
}
