import Polyglot
