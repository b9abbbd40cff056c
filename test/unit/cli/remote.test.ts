/**
 * The thin client's reading of the line (cli/remote.ts): which commands go
 * to the daemon and which socket it looks for, without berth's parser.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { globalOptionSpec } from '../../../src/cli/args.js';
import { COMMAND_NAMES, commandOf, REMOTE_COMMANDS, remoteSocket, VALUED } from '../../../src/cli/remote.js';
import { commandNames } from '../../../src/cli/run.js';

describe('remoteSocket', () => {
  test('knows which global options take a value, as the CLI does', () => {
    const valued = Object.entries(globalOptionSpec).filter(([, o]) => o.type === 'string').flatMap(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]);
    assert.deepEqual([...VALUED].sort(), valued.sort());
  });

  test('the commands sent are the container commands that need no terminal of the client', () => {
    assert.deepEqual([...REMOTE_COMMANDS].sort(), ['create', 'logs', 'ps', 'rm', 'run', 'start', 'stop']);
  });

  test('container commands find --state DIR, --state=DIR, BERTH_STATE, or /run/berth', () => {
    assert.equal(remoteSocket(['run', '--rm', 'img'], {}, '/'), '/run/berth/api.sock');
    assert.equal(remoteSocket(['ps'], { BERTH_STATE: '/s' }, '/'), '/s/api.sock');
    assert.equal(remoteSocket(['--state', '/x', 'ps'], { BERTH_STATE: '/s' }, '/'), '/x/api.sock');
    assert.equal(remoteSocket(['logs', 'c', '--state=/y'], {}, '/'), '/y/api.sock');
    assert.equal(remoteSocket(['--state', 'rel', 'stop', 'c'], {}, '/home/u'), '/home/u/rel/api.sock', 'relative to the cwd');
    // Global options' values are not command words.
    assert.equal(remoteSocket(['--root', 'run', '-o', 'json', '--log-level', 'debug', 'ps'], {}, '/'), '/run/berth/api.sock');
    assert.equal(remoteSocket(['--root', 'ps', 'image', 'ls'], {}, '/'), undefined);
  });

  test('other commands, and anything after --, stay local', () => {
    for (const argv of [['exec', 'c', '--', 'sh'], ['daemon'], ['apply', '-f', 'd'], ['image', 'pull', 'x'], ['events'], ['status'], [], ['--help'], ['--', 'run']]) {
      assert.equal(remoteSocket(argv, {}, '/'), undefined, argv.join(' '));
    }
    assert.equal(remoteSocket(['run', 'img', '--', 'sh', '--state', '/nope'], {}, '/'), '/run/berth/api.sock');
  });
});

describe('commandOf (names the code cache of a line, bin.cts)', () => {
  test('knows every command of the CLI, and no other', () => {
    assert.deepEqual([...COMMAND_NAMES].sort(), commandNames().sort());
  });

  test('the command words of a line, past global options and their values; none for a line naming no command', () => {
    assert.equal(commandOf(['plan', '-f', 'd']), 'plan');
    assert.equal(commandOf(['--root', '/r', '-o', 'json', 'image', 'pull', 'busybox']), 'image pull');
    assert.equal(commandOf(['rm', '-f', 'web']), 'rm', 'a container name is not part of it');
    assert.equal(commandOf(['run', '--name', 'x', 'img', '--', 'sh']), 'run');
    for (const argv of [[], ['--help'], ['image'], ['imgae', 'ls'], ['--root', 'plan'], ['--', 'plan']]) assert.equal(commandOf(argv), undefined, argv.join(' '));
  });
});
