import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import thrift from 'thrift';
import { afterAll, describe, expect, test } from 'vitest';
import { Calculator, closed, connect, rawSocket, startServer, type CalculatorClient } from './calculator.js';

const dir = mkdtempSync(join(tmpdir(), 'tql-tls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A throwaway self-signed certificate for 127.0.0.1. */
function selfSigned(): { key: Buffer; cert: Buffer } {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
}

describe('threaded server transport options', () => {
  test("serves TLS like thrift's tls option: a TLS client trusting the certificate gets its replies", async () => {
    const { key, cert } = selfSigned();
    const { server, port } = await startServer({ tls: { key, cert }, workers: 1 });
    try {
      const connection = thrift.createSSLConnection('127.0.0.1', port, {
        transport: thrift.TFramedTransport,
        protocol: thrift.TBinaryProtocol,
        ca: [cert],
      } as never);
      connection.on('error', () => {});
      const client = thrift.createClient<CalculatorClient>(Calculator as never, connection);
      expect(await client.add(20, 22)).toBe(42);
      connection.end();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  });

  test('maxConnections: a connection over the limit is closed by the server, the others keep working', async () => {
    const { server, port } = await startServer({ maxConnections: 1, workers: 1 });
    try {
      const first = await connect(port);
      expect(await first.client.add(1, 1)).toBe(2);
      const second = await rawSocket(port);
      await closed(second);
      expect(await first.client.add(2, 2)).toBe(4);
      first.close();
    } finally {
      await server.close({ timeoutMs: 100 });
    }
  });
});
