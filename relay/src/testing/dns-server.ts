// A real DNS server on loopback UDP for tests: the resolvers under test talk to it over
// the wire exactly as they would to a recursive resolver, and tests script its answers.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import {
  type Answer,
  AUTHORITATIVE_ANSWER,
  type DecodedPacket,
  decode,
  encode,
  type Question,
  RECURSION_AVAILABLE,
  RECURSION_DESIRED,
} from 'dns-packet';

/** drop: never answer (the client times out); servfail and refused: answer with that rcode. */
export type DnsBehaviour = 'drop' | 'servfail' | 'refused';

export interface TestDnsServer {
  readonly port: number;
  /** 'HOST:PORT' (127.0.0.1 unless asked otherwise), as the relay's `resolvers` config takes it. */
  readonly address: string;
  /** Address records of a name: IPv4 addresses answer A questions, IPv6 ones AAAA questions. */
  setA(name: string, addresses: readonly string[], ttl?: number): void;
  setMx(name: string, exchanges: ReadonlyArray<{ exchange: string; priority: number }>, ttl?: number): void;
  /** TXT records of a name, each one string (split into 255-byte character-strings on the wire). */
  setTxt(name: string, records: readonly string[], ttl?: number): void;
  /**
   * A CNAME: questions of any type for `name` are answered as a recursive resolver does,
   * with the CNAME and then the target's records (followed while the target is served here).
   */
  setCname(name: string, target: string, ttl?: number): void;
  setBehaviour(name: string, behaviour: DnsBehaviour): void;
  /** Forgets the records and behaviour of a name, which then answers NXDOMAIN. */
  remove(name: string): void;
  /** Questions received for a name (case-insensitive), or for all names. */
  queries(name?: string): number;
  close(): Promise<void>;
}

const RCODE_NOERROR = 0;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;
const RCODE_REFUSED = 5;
const NEGATIVE_TTL = 60;

interface Rrset<T> {
  data: T[];
  ttl: number;
}

interface NameEntry {
  a?: Rrset<string>;
  aaaa?: Rrset<string>;
  mx?: Rrset<{ exchange: string; preference: number }>;
  txt?: Rrset<Buffer[]>;
  cname?: { target: string; ttl: number };
  behaviour?: DnsBehaviour;
}

/**
 * Starts a server on 127.0.0.1 at a free UDP port, or where `at` says (a resolver that only
 * speaks to port 53 needs one there). Unknown names get NXDOMAIN with an SOA.
 */
export async function startDnsServer(at: { host?: string; port?: number } = {}): Promise<TestDnsServer> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(at.port ?? 0, at.host ?? '127.0.0.1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return new DnsServer(socket);
}

class DnsServer implements TestDnsServer {
  readonly #socket: Socket;
  readonly #names = new Map<string, NameEntry>();
  readonly #queries = new Map<string, number>();
  #total = 0;
  readonly port: number;
  readonly address: string;

  constructor(socket: Socket) {
    this.#socket = socket;
    const { address, port } = socket.address();
    this.port = port;
    this.address = `${address}:${port}`;
    socket.on('message', (message, peer) => this.#onMessage(message, peer));
  }

  setA(name: string, addresses: readonly string[], ttl = 300): void {
    for (const address of addresses) {
      if (!isIPv4(address) && !isIPv6(address)) throw new TypeError(`not an IP address: ${address}`);
    }
    const entry = this.#entry(name);
    entry.a = { data: addresses.filter((a) => isIPv4(a)), ttl };
    entry.aaaa = { data: addresses.filter((a) => isIPv6(a)), ttl };
  }

  setMx(name: string, exchanges: ReadonlyArray<{ exchange: string; priority: number }>, ttl = 300): void {
    this.#entry(name).mx = {
      data: exchanges.map((e) => ({ exchange: e.exchange, preference: e.priority })),
      ttl,
    };
  }

  setTxt(name: string, records: readonly string[], ttl = 300): void {
    const split = (record: string): Buffer[] => {
      const bytes = Buffer.from(record);
      const parts: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += 255) parts.push(bytes.subarray(i, i + 255));
      return parts.length ? parts : [Buffer.alloc(0)];
    };
    this.#entry(name).txt = { data: records.map(split), ttl };
  }

  setCname(name: string, target: string, ttl = 300): void {
    this.#entry(name).cname = { target: normalise(target), ttl };
  }

  setBehaviour(name: string, behaviour: DnsBehaviour): void {
    this.#entry(name).behaviour = behaviour;
  }

  remove(name: string): void {
    this.#names.delete(normalise(name));
  }

  queries(name?: string): number {
    return name === undefined ? this.#total : (this.#queries.get(normalise(name)) ?? 0);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }

  #entry(name: string): NameEntry {
    const key = normalise(name);
    let entry = this.#names.get(key);
    if (entry === undefined) {
      entry = {};
      this.#names.set(key, entry);
    }
    return entry;
  }

  #onMessage(message: Buffer, peer: RemoteInfo): void {
    let query: DecodedPacket;
    try {
      query = decode(message);
    } catch {
      return; // not DNS; a real server would drop it too
    }
    const question = query.questions?.[0];
    if (query.type !== 'query' || question === undefined) return;
    const key = normalise(question.name);
    this.#total++;
    this.#queries.set(key, (this.#queries.get(key) ?? 0) + 1);

    const entry = this.#names.get(key);
    if (entry?.behaviour === 'drop') return;
    const reply = this.#reply(question, entry);
    const response = encode({
      type: 'response',
      id: query.id ?? 0,
      flags:
        AUTHORITATIVE_ANSWER | RECURSION_AVAILABLE | ((query.flags ?? 0) & RECURSION_DESIRED) | reply.rcode,
      questions: [question],
      answers: reply.answers,
      authorities: reply.authorities,
      // Echo EDNS when asked with it: a resolver that gets an error rcode without OPT
      // concludes the server lacks EDNS and asks again, which would double the query count.
      additionals: query.additionals?.some((a) => a.type === 'OPT')
        ? [
            {
              type: 'OPT',
              name: '.',
              udpPayloadSize: 1232,
              extendedRcode: 0,
              ednsVersion: 0,
              flags: 0,
              flag_do: false,
              options: [],
            },
          ]
        : [],
    });
    this.#socket.send(response, peer.port, peer.address);
  }

  #reply(
    question: Question,
    entry: NameEntry | undefined,
  ): { rcode: number; answers: Answer[]; authorities: Answer[] } {
    if (entry?.behaviour === 'servfail') return { rcode: RCODE_SERVFAIL, answers: [], authorities: [] };
    if (entry?.behaviour === 'refused') return { rcode: RCODE_REFUSED, answers: [], authorities: [] };
    if (entry?.cname && question.type !== 'CNAME') return this.#chase(question, entry.cname);
    const answers = entry === undefined ? [] : answersFor(question, entry);
    if (answers.length > 0) return { rcode: RCODE_NOERROR, answers, authorities: [] };
    // NXDOMAIN for unknown names, NODATA for known names without records of this type; both
    // carry the SOA from which a resolver takes the negative-caching TTL (RFC 2308).
    const rcode = entry === undefined || isEmpty(entry) ? RCODE_NXDOMAIN : RCODE_NOERROR;
    return { rcode, answers: [], authorities: [soaFor(question.name)] };
  }

  /** The CNAME chain from a name (at most 8 links, as resolvers bound it) and the end's records. */
  #chase(
    question: Question,
    first: { target: string; ttl: number },
  ): { rcode: number; answers: Answer[]; authorities: Answer[] } {
    const answers: Answer[] = [];
    let name = question.name;
    let link: { target: string; ttl: number } | undefined = first;
    let end: NameEntry | undefined;
    for (let hops = 0; link && hops < 8; hops++) {
      answers.push({ type: 'CNAME', name, ttl: link.ttl, data: link.target });
      name = link.target;
      end = this.#names.get(name);
      if (end?.behaviour === 'servfail' || end?.behaviour === 'refused' || end?.behaviour === 'drop')
        return { rcode: RCODE_SERVFAIL, answers: [], authorities: [] };
      link = end?.cname;
    }
    const records = end && !link ? answersFor({ ...question, name }, end) : [];
    if (records.length > 0)
      return { rcode: RCODE_NOERROR, answers: [...answers, ...records], authorities: [] };
    // the chain and the end's NXDOMAIN or NODATA (RFC 6604: the rcode is the last name's)
    const rcode = end === undefined || isEmpty(end) ? RCODE_NXDOMAIN : RCODE_NOERROR;
    return { rcode, answers, authorities: [soaFor(name)] };
  }
}

function answersFor(question: Question, entry: NameEntry): Answer[] {
  const name = question.name;
  switch (question.type) {
    case 'A':
      return (entry.a?.data ?? []).map((data) => ({ type: 'A', name, ttl: entry.a?.ttl, data }));
    case 'AAAA':
      return (entry.aaaa?.data ?? []).map((data) => ({ type: 'AAAA', name, ttl: entry.aaaa?.ttl, data }));
    case 'MX':
      return (entry.mx?.data ?? []).map((data) => ({ type: 'MX', name, ttl: entry.mx?.ttl, data }));
    case 'TXT':
      return (entry.txt?.data ?? []).map((data) => ({ type: 'TXT', name, ttl: entry.txt?.ttl, data }));
    case 'CNAME':
      return entry.cname ? [{ type: 'CNAME', name, ttl: entry.cname.ttl, data: entry.cname.target }] : [];
    default:
      return [];
  }
}

function isEmpty(entry: NameEntry): boolean {
  return (
    !entry.a?.data.length &&
    !entry.aaaa?.data.length &&
    !entry.mx?.data.length &&
    !entry.txt?.data.length &&
    !entry.cname
  );
}

function soaFor(name: string): Answer {
  // Pretend the zone is the last two labels of the name asked about.
  const zone = normalise(name).split('.').slice(-2).join('.');
  return {
    type: 'SOA',
    name: zone,
    ttl: NEGATIVE_TTL,
    data: {
      mname: `ns.${zone}`,
      rname: `hostmaster.${zone}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: NEGATIVE_TTL,
    },
  };
}

function normalise(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}
