// The classifier against replies real providers send (collected from their postmaster
// pages and bounces seen in the field), and against the relay's own local failures.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REPLY_CLASSES, type ReplyClass } from '../wire/reply-classes.ts';
import { fromReply } from './delivery-results.ts';
import { classifyReply, classifyResult } from './reply-class.ts';

const SAMPLES: ReadonlyArray<[ReplyClass, string, string]> = [
  // Google
  [
    'invalid-recipient',
    'gmail',
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address for typos or\n550-5.1.1 unnecessary spaces. For more information, go to\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser 41be03b00d2f7-b7b1dd1f5c0si1234567a12.311 - gsmtp",
  ],
  [
    'rate-limited',
    'gmail',
    '421-4.7.28 Gmail has detected an unusual rate of unsolicited mail originating\n421-4.7.28 from your IP address. To protect our users from spam, mail sent from your\n421-4.7.28 IP address has been temporarily rate limited. For more information, go to\n421 4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp',
  ],
  [
    'auth-required',
    'gmail',
    "550-5.7.26 Unauthenticated email from example.com is not accepted due to\n550-5.7.26 domain's DMARC policy. Please contact the administrator of example.com\n550 5.7.26 domain if this was a legitimate mail. - gsmtp",
  ],
  [
    'auth-required',
    'gmail',
    '550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail\n550-5.7.26 requires all senders to authenticate with either SPF or DKIM. - gsmtp',
  ],
  [
    'mailbox-full',
    'gmail',
    "452-4.2.2 The recipient's inbox is out of storage space. Please direct the\n452 4.2.2 recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
  ],
  [
    'mailbox-full',
    'gmail',
    "552-5.2.2 The recipient's inbox is out of storage space and inactive. Please direct\n552 5.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
  ],
  ['inactive-mailbox', 'gmail', '550-5.2.1 The email account that you tried to reach is disabled. - gsmtp'],
  [
    'spam-content',
    'gmail',
    '550-5.7.1 Our system has detected that this message is likely unsolicited mail. To\n550 5.7.1 reduce the amount of spam sent to Gmail, this message has been blocked. - gsmtp',
  ],
  [
    'reputation',
    'gmail',
    '421-4.7.0 This message is suspicious due to the very low reputation of the sending\n421 4.7.0 IP address. - gsmtp',
  ],
  [
    'reputation',
    'gmail',
    "550-5.7.1 [203.0.113.7] The IP you're using to send mail is not authorized to send\n550 5.7.1 email directly to our servers. Please use the SMTP relay at your service provider instead. - gsmtp",
  ],
  [
    'rate-limited',
    'gmail',
    '450-4.2.1 The user you are trying to contact is receiving mail at a rate that\n450 4.2.1 prevents additional messages from being delivered. - gsmtp',
  ],
  ['message-too-large', 'gmail', "552-5.3.4 Your message exceeded Google's message size limits. - gsmtp"],
  ['transient', 'gmail', '421-4.3.0 Temporary System Problem. Try again later (10). - gsmtp'],
  [
    'reputation',
    'gmail',
    '550-5.7.25 The IP address sending this message does not have a PTR record setup - gsmtp',
  ],
  // Microsoft (Outlook.com, Exchange Online)
  [
    'reputation',
    'outlook',
    '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653 AS(2150)',
  ],
  [
    'rate-limited',
    'outlook',
    '451 4.7.500 Server busy. Please try again later from [203.0.113.7]. (S77714) [Name=Protocol Filter Agent][AGT=PFA][MxId=11BAD3D7AB66F2AB] [BN1NAM02FT058.eop-nam02.prod.protection.outlook.com]',
  ],
  [
    'rate-limited',
    'outlook',
    '451 4.7.650 The mail server [203.0.113.7] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775) [Name=IP Throttling]',
  ],
  [
    'spam-block',
    'outlook',
    "550 5.7.1 Unfortunately, messages from [203.0.113.7] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
  ],
  [
    'spam-block',
    'outlook',
    '550 5.7.606 Access denied, banned sending IP [203.0.113.7]. To request removal from this list please visit https://sender.office.com/',
  ],
  [
    'invalid-recipient',
    'outlook',
    '550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). [AM4EUR05FT011.eop-eur05.prod.protection.outlook.com]',
  ],
  [
    'invalid-recipient',
    'outlook',
    '550 5.4.1 Recipient address rejected: Access denied. For more information see https://aka.ms/EXOSmtpErrors [AS(201806281)]',
  ],
  [
    'auth-required',
    'outlook',
    '550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification and has a DMARC policy of reject.',
  ],
  [
    'mailbox-full',
    'outlook',
    '554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded',
  ],
  [
    'bad-domain',
    'outlook',
    '550 5.4.310 DNS domain example.invalid does not exist [Message=InfoDomainNonexistent]',
  ],
  ['policy', 'outlook', '550 5.7.520 Access denied, Your organization does not allow external forwarding.'],
  // Yahoo and AOL
  [
    'rate-limited',
    'yahoo',
    '421 4.7.0 [TSS04] Messages from 203.0.113.7 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes',
  ],
  [
    'rate-limited',
    'yahoo',
    '421 4.7.0 [TS04] Messages from 203.0.113.7 temporarily deferred due to user complaints - 4.16.55.1; see https://help.yahoo.com/kb/postmaster/SLN3434.html',
  ],
  [
    'policy',
    'yahoo',
    '554 5.7.9 Message not accepted for policy reasons.  See https://postmaster.yahooinc.com/error-codes',
  ],
  [
    'auth-required',
    'yahoo',
    '550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM.',
  ],
  [
    'spam-block',
    'yahoo',
    '553 5.7.2 [TSS09] All messages from 203.0.113.7 will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes',
  ],
  [
    'invalid-recipient',
    'yahoo',
    "554 delivery error: dd This user doesn't have a yahoo.com account (nobody@yahoo.com) [0] - mta4001.mail.gq1.yahoo.com",
  ],
  [
    'inactive-mailbox',
    'yahoo',
    '554 30 Sorry, your message to someone@aol.com cannot be delivered. This mailbox is disabled (554.30).',
  ],
  ['invalid-recipient', 'yahoo', '552 1 Requested mail action aborted, mailbox not found'],
  // Apple iCloud
  ['invalid-recipient', 'apple', '550 5.1.1 <nobody@icloud.com>: user does not exist'],
  ['mailbox-full', 'apple', '552 5.2.2 <someone@icloud.com>: user is over quota'],
  [
    'policy',
    'apple',
    '554 5.7.1 [CS01] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137',
  ],
  // Comcast, Proofpoint, Postfix and other common MTAs
  [
    'rate-limited',
    'comcast',
    '421 4.7.0 resimta-po-01v.sys.comcast.net comcast 203.0.113.7 Comcast block for spam.  Please see http://postmaster.comcast.net/smtp-error-codes.php#RL0000',
  ],
  ['invalid-recipient', 'comcast', '550 5.1.1 <nobody@comcast.net> Not our Customer'],
  ['spam-block', 'proofpoint', '554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=203.0.113.7'],
  [
    'spam-block',
    'postfix',
    '554 5.7.1 Service unavailable; Client host [203.0.113.7] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/203.0.113.7',
  ],
  [
    'invalid-recipient',
    'postfix',
    '550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in virtual mailbox table',
  ],
  ['bad-domain', 'postfix', '450 4.1.2 <x@nowhere.example>: Recipient address rejected: Domain not found'],
  [
    'transient',
    'postfix',
    '450 4.2.0 <x@example.net>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.net.html',
  ],
  ['policy', 'postfix', '554 5.7.1 <x@example.net>: Relay access denied'],
  ['message-too-large', 'postfix', '552 5.3.4 Message size exceeds fixed limit'],
  ['spam-content', 'rspamd', '554 5.7.1 Spam message rejected'],
  ['spam-content', 'exim', '550 5.7.1 This message contains a virus (Eicar-Signature)'],
  [
    'rate-limited',
    'exim',
    '421 Too many concurrent SMTP connections from this IP address; please try again later.',
  ],
  ['transient', 'exim', '451 Temporary local problem - please try later'],
  ['mailbox-full', 'dovecot', '452 4.2.2 Mailbox is full / Blocks limit exceeded / Inode limit exceeded'],
  ['other', 'generic', '554 Transaction failed'],
  ['accepted', 'generic', '250 2.0.0 OK  1733404800 d2e1a72fcca58-7259a1b2c3dsi123456b3a.100 - gsmtp'],
];

describe('classifyReply', () => {
  for (const [expected, provider, reply] of SAMPLES) {
    it(`${provider}: ${reply.slice(0, 60).replace(/\n/g, ' ')} → ${expected}`, () => {
      const result = fromReply('rcpt@example.net', reply, 'mx.example.net');
      assert.equal(classifyReply(result), expected);
    });
  }

  it('covers every class but a few local ones with a real sample', () => {
    const seen = new Set(SAMPLES.map(([cls]) => cls));
    const missing = REPLY_CLASSES.filter((c) => !seen.has(c));
    assert.deepEqual(missing, ['routing', 'tls']);
  });

  it('classifies local failures by their reason, not their words', () => {
    const local = (reason: string, status: string, response: string) =>
      classifyReply({ reason, status, response });
    assert.equal(
      local('null_mx', '5.1.10', 'domain x.test does not accept mail (null MX, RFC 7505)'),
      'bad-domain',
    );
    assert.equal(
      local('no_domain', '5.1.2', 'domain x.test not found: no MX or address records'),
      'bad-domain',
    );
    assert.equal(
      local('connect_failed', '4.4.1', 'could not connect to any MX host of x.test: user not found'),
      'routing',
    );
    assert.equal(local('tls_required', '4.7.10', 'TLS required but not offered by mx.x.test'), 'tls');
    assert.equal(
      local(
        'remote_refused',
        '4.7.0',
        'mx.x.test refused the session: 554 5.7.1 Client host blocked using zen.spamhaus.org',
      ),
      'spam-block',
    );
  });

  it('defers a throttling reply that came as a 5xx instead of bouncing it', () => {
    const bounced = fromReply('a@example.net', '550 5.7.1 RL0000 rate limited, try later', 'mx.example.net');
    assert.equal(bounced.outcome, 'bounced');
    const classified = classifyResult(bounced);
    assert.equal(classified.outcome, 'deferred');
    assert.equal(classified.status, '4.7.1');
    assert.equal(classified.class, 'rate-limited');
    const invalid = classifyResult(fromReply('b@example.net', '550 5.1.1 no such user', 'mx.example.net'));
    assert.deepEqual([invalid.outcome, invalid.class], ['bounced', 'invalid-recipient']);
  });
});
