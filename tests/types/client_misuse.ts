// Must NOT compile: proves that tsc really checks against the declarations.
import connect from '../../clients/js/wshub.js';

const c = connect('ws://localhost:8080/ws', { token: 42 });
c.join(7);
c.on('state', (s: number) => s);
