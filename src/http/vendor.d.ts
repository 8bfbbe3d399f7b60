// css-color-converter ships no types; Tally uses one function of it (http/badges.ts).
declare module 'css-color-converter' {
  const converter: { fromString(color: string): object | null };
  export default converter;
}
