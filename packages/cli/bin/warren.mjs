#!/usr/bin/env -S node --import tsx
import '../src/main.ts';
