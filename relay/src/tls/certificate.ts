// The relay's certificate: the configured PEM files, or on the embedded default a
// self-signed one generated on first start and kept in the state directory so that
// clients see the same certificate across restarts.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { SluiceError } from '../errors.ts';

export interface CertificatePair {
  key: string;
  cert: string;
  selfSigned: boolean;
}

async function readPem(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err: unknown) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new SluiceError('SLUICE_ERR_CONFIG_READ', `tls.${what}: cannot read ${path} (${code})`, {
      cause: err,
    });
  }
}

export async function loadCertificate(options: {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  stateDir: string;
  hostname: string;
}): Promise<CertificatePair> {
  if (options.certFile || options.keyFile) {
    if (!options.certFile || !options.keyFile) {
      throw new SluiceError('SLUICE_ERR_CONFIG_INVALID', 'tls: certFile and keyFile must be given together');
    }
    const [cert, key] = await Promise.all([
      readPem(options.certFile, 'certFile'),
      readPem(options.keyFile, 'keyFile'),
    ]);
    return { cert, key, selfSigned: false };
  }
  const certPath = join(options.stateDir, 'selfsigned-cert.pem');
  const keyPath = join(options.stateDir, 'selfsigned-key.pem');
  try {
    const [cert, key] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
    return { cert, key, selfSigned: true };
  } catch {
    // first start: generate below
  }
  const notAfterDate = new Date();
  notAfterDate.setFullYear(notAfterDate.getFullYear() + 2);
  const pems = await generate([{ name: 'commonName', value: options.hostname }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate,
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: options.hostname },
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  await mkdir(options.stateDir, { recursive: true });
  await writeFile(keyPath, pems.private, { mode: 0o600 });
  await writeFile(certPath, pems.cert);
  return { cert: pems.cert, key: pems.private, selfSigned: true };
}
