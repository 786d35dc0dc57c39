import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { startSmtpSink } from './smtp-sink.ts';

function transport(
  port: number,
  options: { host?: string; secure?: boolean; auth?: { user: string; pass: string } } = {},
) {
  return nodemailer.createTransport({
    host: options.host ?? '127.0.0.1',
    port,
    secure: options.secure ?? false,
    tls: { rejectUnauthorized: false },
    ...(options.auth ? { auth: options.auth } : {}),
  });
}

const RAW = 'From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n';

describe('smtp sink', () => {
  it('records the envelope and the bytes that arrived', async () => {
    const sink = await startSmtpSink();
    try {
      await transport(sink.port).sendMail({
        envelope: { from: 'a@example.com', to: ['b@example.net', 'c@example.net'] },
        raw: RAW,
      });
      await sink.waitForMessages(1);
      const [message] = sink.messages;
      assert.ok(message);
      assert.equal(message.sender, 'a@example.com');
      assert.deepEqual(message.recipients, ['b@example.net', 'c@example.net']);
      assert.equal(message.raw.toString(), RAW);
      assert.equal(message.size, Buffer.byteLength(RAW));
      assert.equal(message.tls, false);
      assert.equal(message.authUser, undefined);
      assert.equal(sink.connections, 1);
      assert.equal(sink.transactions, 1);
    } finally {
      await sink.close();
    }
  });

  it('binds another loopback address to stand in for a second host', async () => {
    const sink = await startSmtpSink({ host: '127.0.0.2' });
    try {
      assert.equal(sink.host, '127.0.0.2');
      await transport(sink.port, { host: '127.0.0.2' }).sendMail({
        envelope: { from: 'a@example.com', to: 'b@example.net' },
        raw: RAW,
      });
      assert.equal(sink.messages.length, 1);
    } finally {
      await sink.close();
    }
  });

  it('offers STARTTLS and records that the message came over TLS', async () => {
    const sink = await startSmtpSink({ tls: true });
    try {
      await transport(sink.port).sendMail({
        envelope: { from: 'a@example.com', to: 'b@example.net' },
        raw: RAW,
      });
      assert.equal(sink.messages[0]?.tls, true);
    } finally {
      await sink.close();
    }
  });

  it('speaks implicit TLS', async () => {
    const sink = await startSmtpSink({ implicitTls: true });
    try {
      await transport(sink.port, { secure: true }).sendMail({
        envelope: { from: 'a@example.com', to: 'b@example.net' },
        raw: RAW,
      });
      assert.equal(sink.messages[0]?.tls, true);
    } finally {
      await sink.close();
    }
  });

  it('requires AUTH when given credentials and records the user', async () => {
    const sink = await startSmtpSink({ tls: true, auth: { username: 'relay', password: 's3cret' } });
    try {
      await assert.rejects(
        transport(sink.port).sendMail({ envelope: { from: 'a@example.com', to: 'b@example.net' }, raw: RAW }),
        (err: { responseCode?: number }) => err.responseCode === 530,
      );
      await assert.rejects(
        transport(sink.port, { auth: { user: 'relay', pass: 'wrong' } }).sendMail({
          envelope: { from: 'a@example.com', to: 'b@example.net' },
          raw: RAW,
        }),
        (err: { responseCode?: number }) => err.responseCode === 535,
      );
      await transport(sink.port, { auth: { user: 'relay', pass: 's3cret' } }).sendMail({
        envelope: { from: 'a@example.com', to: 'b@example.net' },
        raw: RAW,
      });
      assert.equal(sink.messages.length, 1);
      assert.equal(sink.messages[0]?.authUser, 'relay');
    } finally {
      await sink.close();
    }
  });

  it('answers scripted RCPT and DATA replies', async () => {
    const sink = await startSmtpSink();
    try {
      sink.setRecipientReply('Gone@example.net', { code: 550, text: '5.1.1 no such user' });
      const info = await transport(sink.port).sendMail({
        envelope: { from: 'a@example.com', to: ['gone@example.net', 'b@example.net'] },
        raw: RAW,
      });
      assert.deepEqual(info.rejected, ['gone@example.net']);
      assert.deepEqual(sink.messages[0]?.recipients, ['b@example.net']);

      sink.setRecipientReply('gone@example.net', undefined);
      sink.setDataReply({ code: 554, text: '5.6.0 content rejected' });
      await assert.rejects(
        transport(sink.port).sendMail({
          envelope: { from: 'a@example.com', to: 'gone@example.net' },
          raw: RAW,
        }),
        (err: { response?: string }) => err.response === '554 5.6.0 content rejected',
      );
      assert.equal(sink.messages.length, 1, 'a rejected message did not arrive');
      assert.equal(sink.transactions, 2);
    } finally {
      await sink.close();
    }
  });

  it('keeps only size and digest when asked not to keep bodies', async () => {
    const sink = await startSmtpSink({ keepBodies: false });
    try {
      await transport(sink.port).sendMail({ envelope: { from: '', to: 'b@example.net' }, raw: RAW });
      const [message] = sink.messages;
      assert.ok(message);
      assert.equal(message.sender, '');
      assert.equal(message.raw.length, 0);
      assert.equal(message.size, Buffer.byteLength(RAW));
      assert.match(message.sha256, /^[0-9a-f]{64}$/);
    } finally {
      await sink.close();
    }
  });

  it('counts sessions, and hangs up on every client when asked', async () => {
    const sink = await startSmtpSink();
    try {
      const client = transport(sink.port);
      const pooled = nodemailer.createTransport({
        host: '127.0.0.1',
        port: sink.port,
        pool: true,
        maxConnections: 1,
      });
      await pooled.sendMail({ envelope: { from: 'a@example.com', to: 'b@example.net' }, raw: RAW });
      assert.equal(sink.openConnections, 1, 'the pooled client keeps its session open');
      sink.dropConnections();
      const deadline = Date.now() + 5000;
      while (sink.openConnections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.equal(sink.openConnections, 0);
      await client.sendMail({ envelope: { from: 'a@example.com', to: 'b@example.net' }, raw: RAW });
      assert.equal(sink.connections, 2);
      pooled.close();
    } finally {
      await sink.close();
    }
  });

  it('gives up waiting for messages after the timeout', async () => {
    const sink = await startSmtpSink();
    try {
      await assert.rejects(sink.waitForMessages(1, 20), /0 of 1 messages/);
    } finally {
      await sink.close();
    }
  });
});
